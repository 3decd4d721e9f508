package all_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

// TestRegistered: importing the package registers every target.
func TestRegistered(t *testing.T) {
	var got []string
	for _, tt := range stack.Types() {
		got = append(got, tt.Name)
	}
	for _, want := range []string{"delay", "dust", "error", "flakey", "linear", "striped", "zero"} {
		if !slices.Contains(got, want) {
			t.Errorf("target %q not registered; have %v", want, got)
		}
	}
}

// TestVersions: dust, flakey and delay have the versions the kernel
// oracle's `dmsetup targets` lists (dust-flakey.out).
func TestVersions(t *testing.T) {
	s := transcript.Load(t, "dust-flakey.out")
	listed := map[string]string{}
	for _, st := range s.Steps {
		if st.Command == "dmsetup targets" {
			for _, l := range st.Out {
				if f := strings.Fields(l); len(f) == 2 {
					listed[f[0]] = f[1]
				}
			}
		}
	}
	for _, name := range []string{"dust", "flakey", "delay"} {
		tt, ok := stack.LookupType(name)
		if !ok || listed[name] == "" || tt.VersionString() != listed[name] {
			t.Errorf("%s: %s, the oracle lists %q", name, tt.VersionString(), listed[name])
		}
	}
}
