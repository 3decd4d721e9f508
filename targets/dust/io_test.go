package dust

import (
	"errors"
	"maps"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// TestBypass: a new target is in bypass: nothing fails, whatever the op,
// and nothing changes the list.
func TestBypass(t *testing.T) {
	d, rec := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "addbadblock", "60")
	msg(t, d, "addbadblock", "0", "3")
	before := maps.Clone(d.blocks)
	for _, op := range []stack.Op{stack.OpRead, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard, stack.OpFlush} {
		for _, b := range []*stack.Bio{bio(op, 60, 1), bio(op, 0, 128)} {
			if act, err := d.MapIO(b); act != stack.Remap || err != nil {
				t.Errorf("bypass %v of %d+%d: %v, %v", op, b.Sector(), b.EndSector()-b.Sector(), act, err)
			}
		}
	}
	if !maps.Equal(d.blocks, before) || len(rec.take()) != 0 {
		t.Errorf("bypass I/O changed the list to %v", d.blocks)
	}
	if f := d.Failing(); !f.Empty() {
		t.Errorf("Failing() in bypass = %v", f)
	}
}

// TestEnabledIO: each op against listed blocks while enabled, with the
// list left behind and the StateChanged reports.
func TestEnabledIO(t *testing.T) {
	type block struct {
		b      uint64
		wrfail uint8
	}
	tests := []struct {
		name    string
		table   string
		list    []block
		bio     *stack.Bio
		fail    uint64 // the failing block, when the request fails
		fails   bool
		left    map[uint64]uint8
		reports []extent.Set // the cleared sets reported, one per report
	}{
		{name: "read of a listed block", list: []block{{60, 0}}, bio: bio(stack.OpRead, 60, 1), fails: true, fail: 60, left: map[uint64]uint8{60: 0}},
		{name: "read next to it", list: []block{{60, 0}}, bio: bio(stack.OpRead, 61, 1), left: map[uint64]uint8{60: 0}},
		{name: "read across it", list: []block{{60, 0}}, bio: bio(stack.OpRead, 56, 8), fails: true, fail: 60, left: map[uint64]uint8{60: 0}},
		{name: "read of bytes inside it", list: []block{{60, 0}}, bio: &stack.Bio{Op: stack.OpRead, Pos: 60*512 + 100, Len: 10}, fails: true, fail: 60, left: map[uint64]uint8{60: 0}},
		{name: "write clears", list: []block{{60, 0}}, bio: bio(stack.OpWrite, 60, 1), left: map[uint64]uint8{}, reports: []extent.Set{ext(60, 1)}},
		{name: "write uses a write-fail count", list: []block{{62, 2}}, bio: bio(stack.OpWrite, 62, 1), fails: true, fail: 62, left: map[uint64]uint8{62: 1}, reports: []extent.Set{{}}},
		{name: "write across a counted and a clearing block", list: []block{{60, 1}, {61, 0}, {63, 0}}, bio: bio(stack.OpWrite, 60, 2), fails: true, fail: 60, left: map[uint64]uint8{60: 0, 63: 0}, reports: []extent.Set{ext(61, 1)}},
		{name: "write-zeroes is a write", list: []block{{60, 0}, {61, 0}}, bio: bio(stack.OpWriteZeroes, 60, 2), left: map[uint64]uint8{}, reports: []extent.Set{ext(60, 2)}},
		{name: "discard judged by its first sector only", list: []block{{60, 0}, {65, 0}}, bio: bio(stack.OpDiscard, 60, 10), left: map[uint64]uint8{65: 0}, reports: []extent.Set{ext(60, 1)}},
		{name: "discard starting before a block", list: []block{{60, 0}}, bio: bio(stack.OpDiscard, 59, 10), left: map[uint64]uint8{60: 0}},
		{name: "flush is a write at the offset's block", list: []block{{0, 0}, {5, 0}}, bio: bio(stack.OpFlush, 0, 0), left: map[uint64]uint8{5: 0}, reports: []extent.Set{ext(0, 1)}},
		{name: "flush uses a count", list: []block{{0, 1}}, bio: bio(stack.OpFlush, 0, 0), fails: true, fail: 0, left: map[uint64]uint8{0: 0}, reports: []extent.Set{{}}},
		{name: "flush of a segment at sector 8, offset 100", table: "0 8 linear /dev/ram1 0\n8 1000 dust /dev/ram0 100 512", list: []block{{92, 0}, {100, 0}}, bio: bio(stack.OpFlush, 0, 0), left: map[uint64]uint8{100: 0}, reports: []extent.Set{{}}}, // block 92 is outside the segment
		{name: "flush of a segment past its offset", table: "0 8 linear /dev/ram1 0\n8 1000 dust /dev/ram0 0 512", list: []block{{0, 0}}, bio: bio(stack.OpFlush, 0, 0), left: map[uint64]uint8{0: 0}},
		// blksz 4096 at offset 4: block 1 is device sectors 8..15, segment sectors 4..11.
		{name: "unaligned offset: a piece sees its first sector's block", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{1, 0}}, bio: bio(stack.OpRead, 0, 8), left: map[uint64]uint8{1: 0}},
		{name: "unaligned offset: one sector", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{1, 0}}, bio: bio(stack.OpRead, 5, 1), fails: true, fail: 1, left: map[uint64]uint8{1: 0}},
		{name: "unaligned offset: the second piece", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{1, 0}}, bio: bio(stack.OpRead, 0, 16), fails: true, fail: 1, left: map[uint64]uint8{1: 0}},
		{name: "unaligned offset: a block no piece starts in", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{2, 0}}, bio: bio(stack.OpRead, 0, 16), left: map[uint64]uint8{2: 0}},
		{name: "unaligned offset: a write clears the block's sectors in the segment", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{1, 0}}, bio: bio(stack.OpWrite, 4, 1), left: map[uint64]uint8{}, reports: []extent.Set{ext(4, 8)}},
		{name: "block 0 before the offset: clipped", table: "0 1024 dust /dev/ram0 4 4096", list: []block{{0, 0}}, bio: bio(stack.OpWrite, 0, 1), left: map[uint64]uint8{}, reports: []extent.Set{ext(0, 4)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table := tc.table
			if table == "" {
				table = "0 16384 dust /dev/ram0 0 512"
			}
			d, rec := build(t, table)
			for _, b := range tc.list {
				d.blocks[b.b] = b.wrfail
			}
			msg(t, d, "enable")
			act, err := d.MapIO(tc.bio)
			if tc.fails {
				var be *BlockError
				if act != stack.Kill || !errors.As(err, &be) || be.Block != tc.fail || !errors.Is(err, syscall.EIO) {
					t.Errorf("MapIO = %v, %v; want Kill with block %d, EIO", act, err, tc.fail)
				}
			} else if act != stack.Remap || err != nil {
				t.Errorf("MapIO = %v, %v; want Remap", act, err)
			}
			if !maps.Equal(d.blocks, tc.left) {
				t.Errorf("list %v, want %v", d.blocks, tc.left)
			}
			got := rec.take()
			if len(got) != len(tc.reports) {
				t.Fatalf("reports %v, want cleared %v", got, tc.reports)
			}
			for i, c := range got {
				if !c.added.Empty() || !c.cleared.Equal(tc.reports[i]) {
					t.Errorf("report %d: added %v cleared %v, want cleared %v", i, c.added, c.cleared, tc.reports[i])
				}
			}
		})
	}
}

// TestWriteFailCountdown is the oracle's block 62 with a count of 2: two
// writes fail, the third clears it; a read fails until then.
func TestWriteFailCountdown(t *testing.T) {
	d, rec := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "addbadblock", "62", "2")
	msg(t, d, "enable")
	for i, want := range []stack.Action{stack.Kill, stack.Kill, stack.Remap} {
		if act, _ := d.MapIO(bio(stack.OpRead, 62, 1)); act != stack.Kill {
			t.Errorf("read before write %d: %v", i, act)
		}
		if act, _ := d.MapIO(bio(stack.OpWrite, 62, 1)); act != want {
			t.Errorf("write %d: %v, want %v", i, act, want)
		}
	}
	if act, _ := d.MapIO(bio(stack.OpRead, 62, 1)); act != stack.Remap {
		t.Errorf("read after clearing: %v", act)
	}
	if r := msg(t, d, "queryblock", "62"); r != "dust_query_block: block 62 not found in badblocklist" {
		t.Errorf("queryblock: %q", r)
	}
	if got := rec.take(); len(got) != 3 || !got[0].cleared.Empty() || !got[1].cleared.Empty() || !got[2].cleared.Equal(ext(62, 1)) {
		t.Errorf("reports %v", got)
	}
}

// TestFailing: the listed blocks' sectors while enabled, relative to the
// segment and clipped to it; blocks outside it count for nothing.
func TestFailing(t *testing.T) {
	tests := []struct {
		table  string
		blocks []string
		want   extent.Set
	}{
		{"0 16384 dust /dev/ram0 0 512", []string{"60", "62", "70"}, extent.Of(extent.Extent{Start: 60, Len: 1}, extent.Extent{Start: 62, Len: 1}, extent.Extent{Start: 70, Len: 1})},
		{"0 1024 dust /dev/ram1 8 512", []string{"60", "5000"}, ext(52, 1)},                                                                // the oracle's dust3
		{"0 16384 dust /dev/ram1 0 4096", []string{"7", "2048"}, ext(56, 8)},                                                               // the oracle's dust2: 2048 is past the end
		{"0 1024 dust /dev/ram0 4 4096", []string{"0", "1", "128"}, extent.Of(extent.Extent{Len: 12}, extent.Extent{Start: 1020, Len: 4})}, // block 128 is device 1024..1031: segment 1020..1023 only
		{"0 100 dust /dev/ram0 4 4096", []string{"12", "13"}, ext(92, 8)},                                                                  // block 13 starts at device 104, past the segment
		{"0 16384 dust /dev/ram0 0 512", nil, extent.Set{}},
	}
	for _, tc := range tests {
		d, _ := build(t, tc.table)
		for _, b := range tc.blocks {
			msg(t, d, "addbadblock", b)
		}
		if f := d.Failing(); !f.Empty() {
			t.Errorf("%s: Failing() in bypass = %v", tc.table, f)
		}
		msg(t, d, "enable")
		if got := d.Failing(); !got.Equal(tc.want) {
			t.Errorf("%s with %v: Failing() = %v, want %v", tc.table, tc.blocks, got, tc.want)
		}
		msg(t, d, "disable")
		if f := d.Failing(); !f.Empty() {
			t.Errorf("%s: Failing() after disable = %v", tc.table, f)
		}
	}
}

// TestFailingIsWhatSingleSectorReadsSee: a one-sector read fails exactly
// on the sectors Failing reports, for an aligned and an unaligned offset.
func TestFailingIsWhatSingleSectorReadsSee(t *testing.T) {
	for _, table := range []string{"0 256 dust /dev/ram0 0 4096", "0 256 dust /dev/ram0 3 4096", "0 256 dust /dev/ram0 5 1024"} {
		d, _ := build(t, table)
		for _, b := range []string{"0", "3", "4", "17", "31", "32"} {
			msg(t, d, "addbadblock", b)
		}
		msg(t, d, "enable")
		f := d.Failing()
		for s := uint64(0); s < 256; s++ {
			act, _ := d.MapIO(bio(stack.OpRead, s, 1))
			if (act == stack.Kill) != f.Contains(s) {
				t.Errorf("%s: sector %d: read %v, Failing contains it: %v", table, s, act, f.Contains(s))
			}
		}
	}
}

func TestMapRmapAreasSplit(t *testing.T) {
	d, _ := build(t, "0 1000 dust /dev/ram0 24 512")
	for _, off := range []uint64{0, 1, 999} {
		m, err := d.Map(off)
		if err != nil || m.Dev != d.dev || m.Sector != 24+off || m.Run != 1000-off {
			t.Errorf("Map(%d) = %+v, %v", off, m, err)
		}
	}
	if got := d.Rmap(d.dev, ext(0, 2000)); !got.Equal(ext(0, 1000)) {
		t.Errorf("Rmap = %v", got)
	}
	if a := d.Areas(); len(a) != 1 || a[0].Start != 24 || a[0].Len != 1000 {
		t.Errorf("Areas = %+v", a)
	}
	if p, err := d.Split(0, 1000); err != nil || p != "1:0 24 512" {
		t.Errorf("Split of the whole = %q, %v", p, err)
	}
	for _, c := range [][2]uint64{{0, 500}, {500, 500}, {8, 8}} {
		if p, err := d.Split(c[0], c[1]); err == nil || !strings.Contains(err.Error(), "dust segment keeps one list") {
			t.Errorf("Split(%d, %d) = %q, %v; want refused with the reason", c[0], c[1], p, err)
		}
	}
}
