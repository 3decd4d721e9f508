package stripe_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/stripe"
)

// load builds a device from table text over the oracle's two pmem leaves
// (259:1 and 259:0, 4096 sectors each) and a third one, 259:2.
func load(t *testing.T, table string) (*stack.Pool, *stack.Device) {
	t.Helper()
	p := stack.NewPool(stacktest.Opener(
		stacktest.NewMemLeaf("259:1", "pmem1", 4096, true),
		stacktest.NewMemLeaf("259:0", "pmem0", 4096, true),
		stacktest.NewMemLeaf("259:2", "pmem2", 4096, true),
	))
	d := stacktest.MustCreate(t, p, "s0", table)
	return p, d
}

// TestTableAndStatus checks the kernel's TABLE and INFO formats:
// "<#stripes> <chunk> (<dev> <offset>)+" and
// "<#stripes> (<dev> )+1 <A|D per stripe>".
func TestTableAndStatus(t *testing.T) {
	tests := []struct {
		name, table, params, status string
	}{
		{"oracle s0", "0 2048 striped 2 8 259:1 64 259:0 128", "2 8 259:1 64 259:0 128", "2 259:1 259:0 1 AA"},
		{"one stripe", "0 8 striped 1 8 259:2 0", "1 8 259:2 0", "1 259:2 1 A"},
		{"three stripes, odd chunk", "0 45 striped 3 5 259:0 1 259:1 2 259:2 3", "3 5 259:0 1 259:1 2 259:2 3", "3 259:0 259:1 259:2 1 AAA"},
		{"same device twice", "0 32 striped 2 8 259:1 0 259:1 100", "2 8 259:1 0 259:1 100", "2 259:1 259:1 1 AA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := load(t, tc.table)
			seg := d.Active().Segments()[0]
			if got := seg.Target.Table(); got != tc.params {
				t.Errorf("Table() = %q, want %q", got, tc.params)
			}
			if got := seg.Target.Status(); got != tc.status {
				t.Errorf("Status() = %q, want %q", got, tc.status)
			}
			if got, want := d.Active().StatusLines()[0], fmt.Sprintf("0 %d striped %s", seg.Len, tc.status); got != want {
				t.Errorf("status line %q, want %q", got, want)
			}
		})
	}
}

// TestStatusDeadStripe checks A turning to D once a stripe sees an I/O
// error (stripe_end_io), counted against the first stripe on the failing
// device, and that success changes nothing.
func TestStatusDeadStripe(t *testing.T) {
	tests := []struct {
		name  string
		table string
		fail  []uint64 // segment sectors whose I/O fails, in order
		ok    []uint64 // segment sectors whose I/O succeeds
		want  string
	}{
		{"no errors", "0 2048 striped 2 8 259:1 64 259:0 128", nil, []uint64{0, 8, 100}, "2 259:1 259:0 1 AA"},
		{"error on the second stripe", "0 2048 striped 2 8 259:1 64 259:0 128", []uint64{8}, nil, "2 259:1 259:0 1 AD"},
		{"error on the first stripe", "0 2048 striped 2 8 259:1 64 259:0 128", []uint64{17}, []uint64{8}, "2 259:1 259:0 1 DA"},
		{"errors on both", "0 2048 striped 2 8 259:1 64 259:0 128", []uint64{0, 15}, nil, "2 259:1 259:0 1 DD"},
		{"same device twice counts against the first", "0 32 striped 2 8 259:1 0 259:1 100", []uint64{8}, nil, "2 259:1 259:1 1 DA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := load(t, tc.table)
			tg := d.Active().Segments()[0].Target
			e, ok := tg.(stack.EndIOer)
			if !ok {
				t.Fatal("striped target does not implement EndIOer")
			}
			for _, s := range tc.ok {
				if err := e.EndIO(&stack.Bio{Op: stack.OpRead, Pos: s * stack.SectorSize, Len: stack.SectorSize}, nil); err != nil {
					t.Fatalf("EndIO(%d, nil) = %v", s, err)
				}
			}
			for _, s := range tc.fail {
				if err := e.EndIO(&stack.Bio{Op: stack.OpRead, Pos: s * stack.SectorSize, Len: stack.SectorSize}, syscall.EIO); err != syscall.EIO {
					t.Fatalf("EndIO(%d, EIO) = %v", s, err)
				}
			}
			if got := tg.Status(); got != tc.want {
				t.Errorf("Status() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStatusAfterReadError drives the A to D change through the I/O path:
// a read that hits a poisoned sector of the second stripe's leaf.
func TestStatusAfterReadError(t *testing.T) {
	a := stacktest.NewMemLeaf("259:1", "pmem1", 512, false)
	b := stacktest.NewMemLeaf("259:0", "pmem0", 512, false)
	p := stack.NewPool(stacktest.Opener(a, b))
	d := stacktest.MustCreate(t, p, "s0", "0 512 striped 2 8 259:1 64 259:0 128")
	buf := make([]byte, 512)
	if _, err := d.ReadAt(buf, 8*512); err != nil {
		t.Fatal(err)
	}
	if got := d.Active().Segments()[0].Target.Status(); got != "2 259:1 259:0 1 AA" {
		t.Fatalf("status after a good read %q", got)
	}
	b.Poison(extent.Of(extent.Extent{Start: 128, Len: 1})) // stripe 1's first sector: s0 sector 8
	if _, err := d.ReadAt(buf, 8*512); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a poisoned sector: %v", err)
	}
	if got := d.Active().Segments()[0].Target.Status(); got != "2 259:1 259:0 1 AD" {
		t.Errorf("status after a failed read %q, want AD", got)
	}
}

// TestStatusLostLeaf: a stripe whose leaf is lost reads D at once, and A
// again when the leaf is back (no I/O error was counted).
func TestStatusLostLeaf(t *testing.T) {
	a := stacktest.NewMemLeaf("259:1", "pmem1", 512, true)
	b := stacktest.NewMemLeaf("259:0", "pmem0", 512, true)
	p := stack.NewPool(stacktest.Opener(a, b))
	d := stacktest.MustCreate(t, p, "s0", "0 512 striped 2 8 259:1 64 259:0 128")
	st := d.Active().Segments()[0].Target
	a.SetLost(true)
	if got := st.Status(); got != "2 259:1 259:0 1 DA" {
		t.Errorf("status with the first leaf lost %q, want DA", got)
	}
	a.SetLost(false)
	if got := st.Status(); got != "2 259:1 259:0 1 AA" {
		t.Errorf("status with the leaf back %q, want AA", got)
	}
}

// TestMapMatchesKernelFormula checks Map against the kernel's
// stripe_map_sector written out plainly, for power-of-two and other chunk
// sizes and stripe counts.
func TestMapMatchesKernelFormula(t *testing.T) {
	for _, c := range []struct{ k, chunk uint64 }{{1, 8}, {2, 8}, {4, 8}, {3, 8}, {2, 3}, {3, 5}, {4, 1}} {
		t.Run(fmt.Sprintf("%d stripes chunk %d", c.k, c.chunk), func(t *testing.T) {
			length := c.k * c.chunk * 7
			offs := []uint64{11, 22, 33, 44}[:c.k]
			devs := []string{"259:1", "259:0", "259:2", "259:1"}
			table := fmt.Sprintf("0 %d striped %d %d", length, c.k, c.chunk)
			for i := range c.k {
				table += fmt.Sprintf(" %s %d", devs[i], offs[i]+1000*i)
			}
			_, d := load(t, table)
			tg := d.Active().Segments()[0].Target
			areas := tg.Areas()
			for off := uint64(0); off < length; off++ {
				chunk, chunkOff := off/c.chunk, off%c.chunk
				stripe := chunk % c.k
				want := areas[stripe].Start + (chunk/c.k)*c.chunk + chunkOff
				m, err := tg.Map(off)
				if err != nil || m.Dev != areas[stripe].Dev || m.Sector != want || m.Run != c.chunk-chunkOff {
					t.Fatalf("Map(%d) = %v:%d run %d, %v; want stripe %d sector %d run %d", off, m.Dev.Name(), m.Sector, m.Run, err, stripe, want, c.chunk-chunkOff)
				}
			}
			for i, a := range areas {
				if a.Len != length/c.k {
					t.Errorf("area %d length %d, want %d", i, a.Len, length/c.k)
				}
			}
		})
	}
}

// TestRmapWholeStripe: a whole stripe's range comes back as one strided
// run, however long the segment.
func TestRmapWholeStripe(t *testing.T) {
	_, d := load(t, "0 8192 striped 4 8 259:0 0 259:1 0 259:2 0 259:0 2048")
	tg := d.Active().Segments()[0].Target
	dev := tg.Areas()[1].Dev
	got := tg.Rmap(dev, extent.Of(extent.Extent{Start: 0, Len: 4096}))
	want := []extent.Run{{Start: 8, Len: 8, Stride: 32, Count: 256}}
	if fmt.Sprint(got.Runs()) != fmt.Sprint(want) {
		t.Errorf("Rmap of all of stripe 1 = %v, want %v", got.Runs(), want)
	}
	// 259:0 holds stripes 0 and 3. Stripe 3's chunk i (24+32i) touches
	// stripe 0's chunk i+1, so the set is a run of 16-sector pieces with
	// the two odd ends apart: three runs, not 256 or 512 extents.
	dev0 := tg.Areas()[0].Dev
	got = tg.Rmap(dev0, extent.Of(extent.Extent{Start: 0, Len: 4096}))
	want = []extent.Run{{Start: 0, Len: 8, Count: 1}, {Start: 24, Len: 16, Stride: 32, Count: 255}, {Start: 8184, Len: 8, Count: 1}}
	if fmt.Sprint(got.Runs()) != fmt.Sprint(want) {
		t.Errorf("Rmap of all of 259:0 = %v, want %v", got.Runs(), want)
	}
	if both := extent.FromRuns(extent.Run{Start: 0, Len: 8, Stride: 32, Count: 256}, extent.Run{Start: 24, Len: 8, Stride: 32, Count: 256}); !got.Equal(both) {
		t.Errorf("Rmap of all of 259:0 = %v, not stripes 0 and 3", got)
	}
}

// TestSplit checks that only whole stripe rows can be cut out, and how.
func TestSplit(t *testing.T) {
	_, d := load(t, "0 64 striped 2 8 259:1 64 259:0 128")
	sp := d.Active().Segments()[0].Target.(stack.Splitter)
	tests := []struct {
		off, n uint64
		want   string
		ok     bool
	}{
		{0, 64, "2 8 259:1 64 259:0 128", true},
		{16, 32, "2 8 259:1 72 259:0 136", true},
		{48, 16, "2 8 259:1 88 259:0 152", true},
		{8, 16, "", false},
		{16, 8, "", false},
	}
	for _, tc := range tests {
		got, err := sp.Split(tc.off, tc.n)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Split(%d, %d) = %q, %v; want %q, ok %v", tc.off, tc.n, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "whole stripe rows (2 stripes of 8 sectors: every 16 sectors") {
			t.Errorf("Split(%d, %d) refused with %q", tc.off, tc.n, err)
		}
	}
}

func TestRegistered(t *testing.T) {
	tt, ok := stack.LookupType("striped")
	if !ok || tt.VersionString() != "v1.6.0" {
		t.Errorf("striped registered as %+v, %v", tt, ok)
	}
}
