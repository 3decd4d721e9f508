package stack

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/daxstack/daxstack/extent"
)

// gateLinear is a linear target for the internal tests (the targets
// package cannot be imported here).
type gateLinear struct {
	dev        *Dev
	start, len uint64
}

func (l *gateLinear) Map(off uint64) (Mapping, error) {
	return Mapping{Dev: l.dev, Sector: l.start + off, Run: l.len - off}, nil
}
func (l *gateLinear) Rmap(*Dev, extent.Set) extent.Set { return extent.Set{} }
func (l *gateLinear) Areas() []Area                    { return []Area{{Dev: l.dev, Start: l.start, Len: l.len}} }
func (l *gateLinear) Table() string                    { return l.dev.Ref() + " " + strconv.FormatUint(l.start, 10) }
func (l *gateLinear) Status() string                   { return "" }

func init() {
	Register(TargetType{Name: "c-gate-linear", Version: [3]uint32{1, 0, 0}, New: func(ti *TargetInfo, args []string) (Target, error) {
		start, _ := ParseSector(args[1])
		dev, err := ti.GetDevice(args[0])
		if err != nil {
			return nil, err
		}
		return &gateLinear{dev: dev, start: start, len: ti.Len}, nil
	}})
}

type gateLeaf struct{ size uint64 }

func (l gateLeaf) ID() string                             { return "gate" }
func (l gateLeaf) Ref() string                            { return "/gate" }
func (l gateLeaf) Name() string                           { return "gate" }
func (l gateLeaf) Size() uint64                           { return l.size }
func (l gateLeaf) ReadAt(p []byte, _ int64) (int, error)  { return len(p), nil }
func (l gateLeaf) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// TestCompiledMapsUnderTheGate runs the publication rules of CompiledMaps
// (see its doc) against the real gate and Suspend/Resume: readers, each
// section inside the gate, load top's published map once and resolve
// sectors all over top with it, while bottom's table is swapped again and
// again (generation g maps bottom onto the leaf at g*span). No section may
// see two generations, and none may see a generation older than the last
// swap that had finished (Resume returned) before the section began.
func TestCompiledMapsUnderTheGate(t *testing.T) {
	testMapsUnderGate(t, true)
}

// testMapsUnderGate runs the test; with unpublish false the suspend skips
// unpublishing the maps, which the test must catch (checked by
// TestCompiledGateTestCanFail).
func testMapsUnderGate(t testing.TB, unpublish bool) (stale int64) {
	const span, gens = 4096, 40
	p := NewPool(func(string) (Leaf, error) { return gateLeaf{size: span * (gens + 2)}, nil })
	mk := func(name, text string) *Device {
		d, err := p.Create(name, "")
		if err == nil {
			err = p.LoadText(d, text, SourceInline)
		}
		if err == nil {
			err = p.Resume(d)
		}
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	bottomTable := func(g int) string { return fmt.Sprintf("0 %d c-gate-linear /gate %d", span, g*span) }
	bottom := mk("bottom", bottomTable(0))
	mid := mk("mid", fmt.Sprintf("0 2048 c-gate-linear bottom 2048\n2048 2048 c-gate-linear bottom 0"))
	top := mk("top", fmt.Sprintf("0 1024 c-gate-linear mid 3072\n1024 3072 c-gate-linear mid 0"))
	maps := NewCompiledMaps()
	maps.Update(top)
	pub := map[*Device]*atomic.Pointer[Compiled]{}
	for _, d := range []*Device{bottom, mid, top} {
		pub[d] = &atomic.Pointer[Compiled]{}
		pub[d].Store(maps.Get(d))
	}
	var swapped atomic.Int64 // the last generation whose swap has finished
	var stop atomic.Bool
	var wg sync.WaitGroup
	var staleN, sections, slow atomic.Int64
	errs := make(chan error, 4)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				g0 := swapped.Load()
				tok := p.gate.enter()
				c := pub[top].Load()
				if c == nil {
					p.gate.exit(tok) // the per-level walk would park at bottom
					slow.Add(1)
					runtime.Gosched()
					continue
				}
				gen := int64(-1)
				for k := uint64(0); k < 16; k++ {
					s := (uint64(i*7+r)*131 + k*257) % 4096
					pl := c.Lookup(s)
					g := int64(pl.Sector / span)
					if gen >= 0 && g != gen {
						errs <- fmt.Errorf("one section saw generations %d and %d", gen, g)
						p.gate.exit(tok)
						return
					}
					gen = g
				}
				p.gate.exit(tok)
				sections.Add(1)
				if gen < g0 {
					staleN.Add(1)
					if !unpublish {
						stop.Store(true) // seen: that is all the failing variant needs
					}
				}
			}
		}()
	}
	for g := 1; g <= gens && !stop.Load(); g++ {
		// Suspend(bottom): unpublish what depends on it, then suspend
		// (flag and gate.synchronize).
		if unpublish {
			for _, a := range maps.Above(bottom) {
				pub[a].Store(nil)
			}
		}
		if err := p.Suspend(bottom); err != nil {
			t.Fatal(err)
		}
		if err := p.LoadText(bottom, bottomTable(g), SourceInline); err != nil {
			t.Fatal(err)
		}
		if err := p.Resume(bottom); err != nil {
			t.Fatal(err)
		}
		swapped.Store(int64(g))
		maps.Update(bottom)
		for _, a := range maps.Above(bottom) {
			if maps.Publishable(a) {
				pub[a].Store(maps.Get(a))
			}
		}
		// Let the readers use the new maps for a while.
		for n := sections.Load(); sections.Load() < n+5 && !t.Failed() && !stop.Load(); {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if unpublish {
		if staleN.Load() != 0 {
			t.Errorf("%d of %d sections used a map older than a finished swap", staleN.Load(), sections.Load())
		}
		if sections.Load() == 0 {
			t.Error("no section used a compiled map")
		}
		if c := pub[top].Load(); c == nil || !c.Current() {
			t.Error("top's published map is not current at the end")
		}
	}
	t.Logf("%d sections with a map, %d without, %d stale", sections.Load(), slow.Load(), staleN.Load())
	return staleN.Load()
}

// TestCompiledGateTestCanFail: without the unpublish at suspend, readers
// keep using top's old map after bottom's swap, and the test above sees it.
func TestCompiledGateTestCanFail(t *testing.T) {
	for range 5 {
		if testMapsUnderGate(t, false) > 0 {
			return
		}
	}
	t.Error("no stale section seen in 5 runs without the unpublish")
}
