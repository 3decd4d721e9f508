package zero_test

import (
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/zero"
)

// TestZero: no parameters and no status (the line keeps the space after
// the type), no child, runs to the segment's end, nothing maps back.
func TestZero(t *testing.T) {
	p := stack.NewPool(nil)
	d := stacktest.MustCreate(t, p, "z", "0 32 zero\n32 8 zero")
	tb := d.Active()
	if got := tb.String(); got != "0 32 zero \n32 8 zero " {
		t.Errorf("table %q", got)
	}
	if got := tb.StatusLines(); len(got) != 2 || got[0] != "0 32 zero " || got[1] != "32 8 zero " {
		t.Errorf("status %q", got)
	}
	tg := tb.Segments()[0].Target
	if tg.Table() != "" || tg.Status() != "" || tg.Areas() != nil {
		t.Errorf("Table %q Status %q Areas %v", tg.Table(), tg.Status(), tg.Areas())
	}
	for _, off := range []uint64{0, 31} {
		if m, err := tg.Map(off); err != nil || m.Dev != nil || m.Run != 32-off {
			t.Errorf("Map(%d) = %+v, %v", off, m, err)
		}
	}
	if got := tg.Rmap(d.Dev(), extent.Of(extent.Extent{Start: 0, Len: 8})); !got.Empty() {
		t.Errorf("Rmap = %v", got)
	}
}

func TestRegistered(t *testing.T) {
	tt, ok := stack.LookupType("zero")
	if !ok || tt.VersionString() != "v1.2.0" {
		t.Errorf("zero registered as %+v, %v", tt, ok)
	}
}
