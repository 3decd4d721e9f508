package rmapchain_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// readFails is the brute force through the real I/O path: whether a read
// of sector s of d fails.
func readFails(d *stack.Device, s uint64) bool {
	_, err := d.ReadAt(make([]byte, stack.SectorSize), int64(s*stack.SectorSize))
	return err != nil
}

func readFailSet(d *stack.Device) extent.Set {
	var ext []extent.Extent
	for s := range d.Size() {
		if readFails(d, s) {
			ext = append(ext, extent.Extent{Start: s, Len: 1})
		}
	}
	return extent.Of(ext...)
}

// dustSeg is a dust segment of a random stack, for messages.
type dustSeg struct {
	dev   *stack.Device
	seg   stack.Segment
	start uint64 // its offset on its device
	spb   uint64 // sectors per block
}

// dustSegs returns the stack's dust segments, from their tables.
func dustSegs(t *testing.T, st *stacktest.Stack) []dustSeg {
	var out []dustSeg
	for _, d := range st.Devices {
		for _, seg := range d.Active().Segments() {
			if seg.Type != "dust" {
				continue
			}
			args := stack.SplitArgs(seg.Target.Table())
			start, err1 := strconv.ParseUint(args[1], 10, 64)
			blksz, err2 := strconv.ParseUint(args[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("dust table %q", seg.Target.Table())
			}
			out = append(out, dustSeg{dev: d, seg: seg, start: start, spb: blksz / stack.SectorSize})
		}
	}
	return out
}

// message sends a random dust message: mostly blocks the segment covers,
// sometimes others; enable and disable; clearing the list.
func (ds dustSeg) message(rng *rand.Rand) []string {
	first, last := ds.start/ds.spb, (ds.start+ds.seg.Len-1)/ds.spb
	block := first + rng.Uint64N(last-first+1)
	if rng.IntN(8) == 0 {
		block = rng.Uint64N(last + 8)
	}
	b := strconv.FormatUint(block, 10)
	switch k := rng.IntN(10); {
	case k < 4:
		if rng.IntN(3) == 0 {
			return []string{"addbadblock", b, strconv.Itoa(rng.IntN(3))}
		}
		return []string{"addbadblock", b}
	case k < 6:
		return []string{"removebadblock", b}
	case k < 8:
		return []string{"enable"}
	case k < 9:
		return []string{"disable"}
	}
	return []string{"clearbadblocks"}
}

// TestDustBadRangesAreFailingReads: on random stacks that include dust
// segments (in bypass and enabled, with random lists), poison and lost
// leaves, error and zero segments, the bad ranges of every device are
// exactly the sectors whose one-sector read through the I/O path fails:
// before any message, after each message, and after writes through the
// I/O path (which clear dust blocks while enabled, and leaf poison).
func TestDustBadRangesAreFailingReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 19))
	iters := 150
	if testing.Short() {
		iters = 40
	}
	withDust := 0
	for iter := range iters {
		st, err := stacktest.Random(rng, stacktest.Options{
			Devices: 1 + rng.IntN(5), ErrorTarget: true, ZeroTarget: true, DustTarget: true, LeafSectors: 200,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range st.Leaves {
			switch rng.IntN(6) {
			case 0:
				l.SetLost(true)
			case 1, 2:
				l.Poison(extent.Of(extent.Extent{Start: rng.Uint64N(200), Len: 1 + rng.Uint64N(6)}))
			}
		}
		dusts := dustSegs(t, st)
		if len(dusts) > 0 {
			withDust++
		}
		check := func(when string) {
			t.Helper()
			g := st.Pool.Graph()
			var devs []*stack.Dev
			for _, d := range st.Devices {
				devs = append(devs, d.Dev())
			}
			got := rmapchain.BadRanges(g, devs...)
			for _, d := range st.Devices {
				if want := readFailSet(d); !got[d.Dev()].Equal(want) {
					t.Fatalf("iter %d, %s: %s bad ranges\n got %v\nwant %v (the reads that fail)\ntables: %q", iter, when, d.Name(), got[d.Dev()], want, st.Tables)
				}
			}
		}
		check("as built")
		for step := range 2 * len(dusts) {
			ds := dusts[rng.IntN(len(dusts))]
			words := ds.message(rng)
			ds.seg.Target.(stack.Messager).Message(words) // refusals (a duplicate, a block out of range) change nothing
			check(fmt.Sprintf("message %d %q to %s at %d", step, words, ds.dev.Name(), ds.seg.Begin))
			if rng.IntN(2) == 0 {
				d := st.Devices[rng.IntN(len(st.Devices))]
				s := rng.Uint64N(d.Size())
				d.WriteAt(make([]byte, stack.SectorSize), int64(s*stack.SectorSize)) // may fail: poison, error, a write-fail count
				check(fmt.Sprintf("a write of %s sector %d", d.Name(), s))
			}
		}
	}
	if withDust < iters/2 {
		t.Fatalf("only %d of %d stacks had a dust segment", withDust, iters)
	}
}
