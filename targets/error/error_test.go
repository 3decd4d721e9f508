package errtarget_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/error"
)

// TestTableAndStatus: the kernel's error target has no status method, so
// dmsetup prints nothing after the type, but keeps the space before it,
// whatever arguments the table was loaded with.
func TestTableAndStatus(t *testing.T) {
	tests := []struct {
		name, table, line string
		areas             int
	}{
		{"no arguments", "0 16 error", "0 16 error ", 0},
		{"device and offset (fstests' form)", "0 16 error 259:1 8", "0 16 error ", 1},
		{"one argument, ignored", "0 16 error 259:1", "0 16 error ", 0},
		{"three arguments, ignored", "0 16 error 259:1 0 x", "0 16 error ", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := stack.NewPool(stacktest.Opener(stacktest.NewMemLeaf("259:1", "pmem1", 64, true)))
			d := stacktest.MustCreate(t, p, "e", tc.table)
			tb := d.Active()
			tg := tb.Segments()[0].Target
			if tg.Table() != "" || tg.Status() != "" {
				t.Errorf("Table() %q, Status() %q; want both empty", tg.Table(), tg.Status())
			}
			if tb.Lines()[0] != tc.line || tb.StatusLines()[0] != tc.line {
				t.Errorf("lines %q, status %q; want %q", tb.Lines()[0], tb.StatusLines()[0], tc.line)
			}
			if n := len(tg.Areas()); n != tc.areas {
				t.Errorf("%d areas, want %d", n, tc.areas)
			}
			if tc.areas == 1 {
				if a := tg.Areas()[0]; a.Start != 8 || a.Len != 16 || a.Dev.Name() != "pmem1" {
					t.Errorf("area %+v", a)
				}
			}
		})
	}
}

// TestMapFails: every sector fails with ErrKill (EIO), the run reaching the
// segment's end; nothing maps back up; all of it is failing.
func TestMapFails(t *testing.T) {
	p := stack.NewPool(stacktest.Opener(stacktest.NewMemLeaf("259:1", "pmem1", 64, true)))
	d := stacktest.MustCreate(t, p, "e", "0 16 error 259:1 8")
	tg := d.Active().Segments()[0].Target
	for _, off := range []uint64{0, 7, 15} {
		m, err := tg.Map(off)
		if !errors.Is(err, stack.ErrKill) || !errors.Is(err, syscall.EIO) || m.Run != 16-off || m.Dev != nil {
			t.Errorf("Map(%d) = %+v, %v", off, m, err)
		}
	}
	if got := tg.Rmap(tg.Areas()[0].Dev, extent.Of(extent.Extent{Start: 0, Len: 64})); !got.Empty() {
		t.Errorf("Rmap = %v", got)
	}
	f, ok := tg.(stack.Failer)
	if !ok || !f.Failing().Equal(extent.Of(extent.Extent{Start: 0, Len: 16})) {
		t.Errorf("Failing() = %v (Failer %v)", f, ok)
	}
	// The kernel prints no parameters, but the stored form keeps the
	// device (a dependency), and a piece keeps it at the moved offset.
	if got := tg.Table(); got != "" {
		t.Errorf("Table() = %q, want nothing, as the kernel prints", got)
	}
	if got := tg.(stack.Persister).StoredParams(); got != "259:1 8" {
		t.Errorf("StoredParams() = %q", got)
	}
	if got, err := tg.(stack.Splitter).Split(3, 5); got != "259:1 11" || err != nil {
		t.Errorf("Split = %q, %v", got, err)
	}
}

func TestRegistered(t *testing.T) {
	tt, ok := stack.LookupType("error")
	if !ok || tt.VersionString() != "v1.7.0" {
		t.Errorf("error registered as %+v, %v", tt, ok)
	}
}
