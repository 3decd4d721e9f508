package all_test

import (
	"slices"
	"testing"

	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

// TestRegistered: importing the package registers all four targets.
func TestRegistered(t *testing.T) {
	var got []string
	for _, tt := range stack.Types() {
		got = append(got, tt.Name)
	}
	for _, want := range []string{"error", "linear", "striped", "zero"} {
		if !slices.Contains(got, want) {
			t.Errorf("target %q not registered; have %v", want, got)
		}
	}
}
