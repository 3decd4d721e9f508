package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps the errors reported to it.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestSameState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	tests := []struct {
		name   string
		change func() error
		errs   int
	}{
		{"untouched", func() error { return nil }, 0},
		{"same bytes written again", func() error { return os.WriteFile(path, []byte("abc"), 0o600) }, 1},
		{"other bytes, same size and mtime", func() error {
			if err := os.WriteFile(path, []byte("abd"), 0o600); err != nil {
				return err
			}
			return os.Chtimes(path, past, past)
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, past, past); err != nil {
				t.Fatal(err)
			}
			before := StateOf(t, path)
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			r := &recorder{TB: t}
			SameState(r, path, before, "the change")
			if len(r.errs) != tc.errs {
				t.Errorf("errors %q, want %d", r.errs, tc.errs)
			}
		})
	}
}
