package stacktest

import (
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// MustCreate creates mapped device name in p, loads table text into it and
// resumes it, as `dmsetup create name --table text` does; any error fails
// tb at once.
func MustCreate(tb testing.TB, p *stack.Pool, name, text string) *stack.Device {
	tb.Helper()
	d, err := p.Create(name, "")
	if err != nil {
		tb.Fatalf("create %s: %v", name, err)
	}
	if err := p.LoadText(d, text, stack.SourceInline); err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	if err := p.Resume(d); err != nil {
		tb.Fatalf("resume %s: %v", name, err)
	}
	return d
}
