package linear_test

import (
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/linear"
)

func load(t *testing.T, table string) *stack.Device {
	t.Helper()
	p := stack.NewPool(stacktest.Opener(
		stacktest.NewMemLeaf("259:1", "pmem1", 4096, true),
		stacktest.NewMemLeaf("/var/lib/pm file", "/var/lib/pm file", 4096, true),
	))
	return stacktest.MustCreate(t, p, "top", table)
}

// TestTableAndStatus: the table prints "<dev> <offset>" (the device as its
// reference: major:minor, or an escaped path); status prints nothing, so
// the status line keeps only the space after the type.
func TestTableAndStatus(t *testing.T) {
	tests := []struct {
		name, table, lines, status string
	}{
		{"device number", "0 1000 linear 259:1 24", "0 1000 linear 259:1 24", "0 1000 linear "},
		{"path with a space", `0 8 linear /var/lib/pm\ file 0`, `0 8 linear /var/lib/pm\ file 0`, "0 8 linear "},
		{"two segments", "0 8 linear 259:1 0\n8 8 linear 259:1 100", "0 8 linear 259:1 0\n8 8 linear 259:1 100", "0 8 linear \n8 8 linear "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := load(t, tc.table)
			if got := d.Active().String(); got != tc.lines {
				t.Errorf("table %q, want %q", got, tc.lines)
			}
			status := ""
			for i, l := range d.Active().StatusLines() {
				if i > 0 {
					status += "\n"
				}
				status += l
			}
			if status != tc.status {
				t.Errorf("status %q, want %q", status, tc.status)
			}
			if got := d.Active().Segments()[0].Target.Status(); got != "" {
				t.Errorf("Status() = %q", got)
			}
		})
	}
}

// TestMapRmap: sector s is offset+s of the device, the run reaches the
// segment's end, and Rmap gives back exactly the part inside the segment.
func TestMapRmap(t *testing.T) {
	d := load(t, "0 100 linear 259:1 1000")
	tg := d.Active().Segments()[0].Target
	for _, off := range []uint64{0, 1, 50, 99} {
		m, err := tg.Map(off)
		if err != nil || m.Sector != 1000+off || m.Run != 100-off || m.Dev.Name() != "pmem1" {
			t.Errorf("Map(%d) = %+v, %v", off, m, err)
		}
	}
	dev := tg.Areas()[0].Dev
	got := tg.Rmap(dev, extent.Of(extent.Extent{Start: 990, Len: 20}, extent.Extent{Start: 1095, Len: 10}))
	if want := extent.Of(extent.Extent{Start: 0, Len: 10}, extent.Extent{Start: 95, Len: 5}); !got.Equal(want) {
		t.Errorf("Rmap = %v, want %v", got, want)
	}
	if got := tg.Rmap(dev, extent.Of(extent.Extent{Start: 0, Len: 1000})); !got.Empty() {
		t.Errorf("Rmap below the segment's area = %v", got)
	}
	if a := tg.Areas(); len(a) != 1 || a[0].Start != 1000 || a[0].Len != 100 {
		t.Errorf("Areas() = %+v", a)
	}
}

func TestSplit(t *testing.T) {
	d := load(t, "0 100 linear 259:1 1000")
	sp := d.Active().Segments()[0].Target.(stack.Splitter)
	if got, err := sp.Split(40, 10); got != "259:1 1040" || err != nil {
		t.Errorf("Split(40, 10) = %q, %v", got, err)
	}
}

func TestRegistered(t *testing.T) {
	tt, ok := stack.LookupType("linear")
	if !ok || tt.VersionString() != "v1.4.0" {
		t.Errorf("linear registered as %+v, %v", tt, ok)
	}
}
