package control_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
)

// readFails returns the sectors of a device whose one-sector read fails.
func readFails(t *testing.T, e control.API, name string, size uint64) extent.Set {
	t.Helper()
	h, err := e.Open(bg, control.OpenReq{Name: name})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer h.Close()
	var runs []extent.Run
	buf := make([]byte, 512)
	for s := uint64(0); s < size; s++ {
		if _, err := h.ReadAt(buf, int64(s)*512); err != nil {
			runs = append(runs, extent.Run{Start: s, Len: 1, Count: 1})
		}
	}
	return extent.Disjoint(runs...)
}

// randomShrinkStack builds a random two-level stack over the fixture's
// leaves: middle devices striped or linear over leaf ranges, and a top
// that concatenates pieces of them. It returns every device (the leaves
// used included) with its size.
func randomShrinkStack(t *testing.T, rng *rand.Rand, e control.API, leaves []string, leafSize uint64) map[string]uint64 {
	t.Helper()
	devs := map[string]uint64{}
	create := func(name, table string, size uint64) {
		if err := e.Create(bg, control.CreateReq{Name: name, Table: &table}); err != nil {
			t.Fatalf("create %s %q: %v", name, table, err)
		}
		devs[name] = size
	}
	var mids []string
	for i := range 1 + rng.IntN(3) {
		name := fmt.Sprintf("m%d", i)
		a, b := leaves[rng.IntN(len(leaves))], leaves[rng.IntN(len(leaves))]
		if rng.IntN(2) == 0 && a != b {
			chunk := uint64(8 << rng.IntN(3))
			per := (leafSize / 2 / chunk) * chunk
			size := 2 * per
			offA, offB := rng.Uint64N(leafSize-per+1), rng.Uint64N(leafSize-per+1)
			create(name, fmt.Sprintf("0 %d striped 2 %d %s %d %s %d", size, chunk, a, offA, b, offB), size)
			devs[a], devs[b] = leafSize, leafSize
		} else {
			size := 1 + rng.Uint64N(leafSize)
			off := rng.Uint64N(leafSize - size + 1)
			create(name, fmt.Sprintf("0 %d linear %s %d", size, a, off), size)
			devs[a] = leafSize
		}
		mids = append(mids, name)
	}
	var lines []string
	var at uint64
	for range 1 + rng.IntN(3) {
		m := mids[rng.IntN(len(mids))]
		n := 1 + rng.Uint64N(devs[m])
		off := rng.Uint64N(devs[m] - n + 1)
		lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, n, m, off))
		at += n
	}
	create("top", strings.Join(lines, "\n"), at)
	return devs
}

// TestShrinkProperty: for random stacks over file leaves, random
// truncations of the leaves (to nothing, to less than a sector, to sizes
// not a multiple of a sector),
// and both a long-lived engine (the daemon's) and a fresh one on the same
// database (a command-line process): the badblocks of every device and
// leaf are exactly the sectors whose read fails, and after a rescan the
// media-error events of every device add up to exactly its badblocks.
func TestShrinkProperty(t *testing.T) {
	const leafSize = 256
	for seed := range uint64(24) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 10))
			f := newFixture(t, 3, leafSize)
			e := f.daemonEngine()
			devs := randomShrinkStack(t, rng, e, f.leaves, leafSize)
			for _, l := range f.leaves {
				if rng.IntN(3) > 0 {
					size := []int64{0, rng.Int64N(512), rng.Int64N(leafSize * 512), rng.Int64N(leafSize * 512)}[rng.IntN(4)]
					if err := os.Truncate(l, size); err != nil {
						t.Fatal(err)
					}
				}
			}
			check := func(what string, api control.API) map[string]extent.Set {
				bad := map[string]extent.Set{}
				for name, size := range devs {
					r, err := api.Badblocks(bg, control.NameReq{Name: name})
					if err != nil {
						t.Fatalf("%s: badblocks %s: %v", what, name, err)
					}
					got, want := r.Ranges, readFails(t, api, name, size)
					if !got.Equal(want) {
						t.Errorf("%s: badblocks %s = %v, but reads fail at %v", what, name, got, want)
					}
					bad[name] = got
				}
				return bad
			}
			bad := check("long-lived engine", e)
			if _, err := e.Rescan(bg); err != nil {
				t.Fatal(err)
			}
			evs, err := e.Events(bg, control.EventsReq{})
			if err != nil {
				t.Fatal(err)
			}
			byDev := map[string]extent.Set{}
			for _, ev := range evs.Events {
				if ev.Kind != rmapchain.MediaError {
					t.Errorf("event %+v: only media errors expected", ev)
				}
				byDev[ev.Device] = byDev[ev.Device].Union(ev.Ranges)
			}
			for name, s := range bad {
				if !byDev[name].Equal(s) {
					t.Errorf("media-error events of %s: %v, badblocks %v", name, byDev[name], s)
				}
			}
			if r, err := e.Rescan(bg); err != nil || len(r.Shrunk)+len(r.Grown) > 0 {
				t.Errorf("a second rescan: %+v %v", r, err)
			}
			e.Close()
			fresh := f.open(false)
			defer fresh.Close()
			again := check("fresh engine", fresh)
			for name, s := range bad {
				if !again[name].Equal(s) {
					t.Errorf("fresh engine: badblocks %s %v, the long-lived one said %v", name, again[name], s)
				}
			}
		})
	}
}
