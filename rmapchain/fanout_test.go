package rmapchain_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestPropagateFanOut: one leaf under many segments (a 64-segment device,
// and a 20-segment one with two stripes of each segment on it) and
// many devices (12 over the leaf, 3 over all of those), from many
// goroutines at once. Each result must equal the forward map's answer,
// whatever the walker pool handed out before.
func TestPropagateFanOut(t *testing.T) {
	leaf := stacktest.NewMemLeaf("/l", "pmem", 1024, true)
	p := stack.NewPool(stacktest.Opener(leaf))
	load := func(name, text string) *stack.Device {
		return stacktest.MustCreate(t, p, name, text)
	}
	var lines []string
	for i := range 64 { // 64 segments of 16 sectors, leaf chunks in reverse order
		lines = append(lines, fmt.Sprintf("%d 16 linear /l %d", i*16, (63-i)*16))
	}
	devs := []*stack.Device{load("wide", strings.Join(lines, "\n"))}
	// 20 striped segments with two of their three stripes on the leaf:
	// each must be asked once however many of its areas the set reaches
	// (asked twice, it would add its strided runs twice).
	lines = lines[:0]
	for i := range 20 {
		a := uint64(i*32) % 960
		lines = append(lines, fmt.Sprintf("%d 96 striped 3 8 /l %d wide %d /l %d", i*96, a, i*32, (a+512)%960))
	}
	devs = append(devs, load("twin", strings.Join(lines, "\n")))
	var mids []string
	for i := range 12 {
		name := fmt.Sprintf("m%02d", i)
		devs = append(devs, load(name, fmt.Sprintf("0 64 striped 2 8 /l %d wide %d", i*64, 1024-64-i*64)))
		mids = append(mids, name)
	}
	for i := range 3 {
		var l []string
		for j, m := range mids {
			l = append(l, fmt.Sprintf("%d 32 linear %s %d", j*32, m, i*16))
		}
		devs = append(devs, load(fmt.Sprintf("top%d", i), strings.Join(l, "\n")))
	}
	g := p.Graph()
	ld, _ := p.Leaf(leaf.ID())

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for range 60 {
				var bad extent.Set
				if rng.IntN(4) == 0 {
					bad = extent.Of(extent.Extent{Start: 0, Len: 1024})
				} else {
					bad = extent.Of(extent.Extent{Start: rng.Uint64N(1000), Len: 1 + rng.Uint64N(24)},
						extent.Extent{Start: rng.Uint64N(1000), Len: 1 + rng.Uint64N(24)})
				}
				got := rmapchain.Propagate(g, map[*stack.Dev]extent.Set{ld: bad}, nil)
				for _, d := range devs {
					var want []extent.Extent
					for s := uint64(0); s < d.Size(); s++ {
						steps, _ := p.Trace(d, s)
						if last := steps[len(steps)-1]; last.Child == ld && bad.Contains(last.CSector) {
							want = append(want, extent.Extent{Start: s, Len: 1})
						}
					}
					if w := extent.Of(want...); !got[d.Dev()].Equal(w) {
						t.Errorf("%s: got %v, want %v (bad %v)", d.Name(), got[d.Dev()], w, bad)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
