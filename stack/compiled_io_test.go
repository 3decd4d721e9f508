package stack_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// twins builds the same random stack twice from one seed (same tables,
// leaf contents, target clocks and chance): the first pool walks level by
// level (SetCompiledMaps(false)), the second goes through compiled maps.
func twins(seed uint64, o randOpts) (walk, comp *randStack, err error) {
	walk, err = newRandStack(rand.New(rand.NewPCG(seed, 5)), o)
	if err != nil {
		return nil, nil, err
	}
	comp, err = newRandStack(rand.New(rand.NewPCG(seed, 5)), o)
	if err != nil {
		return nil, nil, err
	}
	walk.p.SetCompiledMaps(false)
	return walk, comp, nil
}

// outcome is what one request gave.
type outcome struct {
	n    int64
	err  string
	data []byte
}

func (o outcome) String() string {
	return fmt.Sprintf("n=%d err=%q data(%d)=%x", o.n, o.err, len(o.data), o.data[:min(len(o.data), 16)])
}

func doReq(d *stack.Device, op stack.Op, off, n int64, fill byte) outcome {
	r := stack.Request{Op: op, Off: off, Len: n}
	if op == stack.OpRead || op == stack.OpWrite {
		r.Data = make([]byte, n)
		if op == stack.OpWrite {
			for i := range r.Data {
				r.Data[i] = fill + byte(i*13)
			}
		}
	}
	k, err := d.Do(context.Background(), r)
	o := outcome{n: k}
	if err != nil {
		o.err = err.Error()
	}
	if op == stack.OpRead {
		o.data = r.Data
	}
	return o
}

// TestCompiledIOMatchesLevels runs the same random requests on twin random
// stacks (linear, striped, error, zero, dust, flakey and the c-* targets
// with run-time hooks at random places, several levels, leaves with
// poison, tables swapped below the top), one pool walking level by level
// and one through compiled maps: every request must do the same bytes and
// give the same error, every read the same data, and the leaves must end
// the same. The compiled pool must really use its maps.
func TestCompiledIOMatchesLevels(t *testing.T) {
	iters := 400
	if testing.Short() {
		iters = 60
	}
	var published, requests, failed int
	for iter := range iters {
		seed := uint64(iter)
		rng := rand.New(rand.NewPCG(seed, 9))
		o := randOpts{devices: 1 + rng.IntN(5), maxSegs: 1 + rng.IntN(6), maxLen: 1 + rng.Uint64N(64), maxDepth: 1 + rng.IntN(4), hooks: true, stateful: true}
		walk, comp, err := twins(seed, o)
		if err != nil {
			if isRefusal(err) {
				continue
			}
			t.Fatal(err)
		}
		both := func(fn func(rs *randStack) error) error {
			e1, e2 := fn(walk), fn(comp)
			if fmt.Sprint(e1) != fmt.Sprint(e2) {
				return fmt.Errorf("walk: %v; compiled: %v", e1, e2)
			}
			return e1
		}
		// Dust: enabled or not, a few bad blocks.
		var msgs [][]string
		for _, d := range walk.devs {
			for i, seg := range d.Active().Segments() {
				if seg.Type != "dust" {
					continue
				}
				if rng.IntN(3) != 0 {
					msgs = append(msgs, []string{d.Name(), fmt.Sprint(i), "enable"})
				}
				for range rng.IntN(4) {
					msgs = append(msgs, []string{d.Name(), fmt.Sprint(i), "addbadblock", fmt.Sprint(rng.IntN(64)), fmt.Sprint(rng.IntN(3))})
				}
			}
		}
		for _, m := range msgs {
			both(func(rs *randStack) error {
				d, _ := rs.p.Device(m[0])
				var i int
				fmt.Sscan(m[1], &i)
				_, err := d.Active().Segments()[i].Target.(stack.Messager).Message(m[2:])
				return err
			})
		}
		// Poison on the leaves.
		for li := range walk.leaves {
			if walk.leaves[li].Size() == 0 || rng.IntN(2) == 0 {
				continue
			}
			s := rng.Uint64N(walk.leaves[li].Size())
			bad := extent.Of(extent.Extent{Start: s, Len: 1 + rng.Uint64N(min(3, walk.leaves[li].Size()-s))})
			walk.leaves[li].Poison(bad)
			comp.leaves[li].Poison(bad)
		}
		for step := range 40 {
			// Now and then, a new table for a device above the first,
			// over the devices below it only.
			if len(walk.devs) > 1 && rng.IntN(8) == 0 {
				j := 1 + rng.IntN(len(walk.devs)-1)
				text := walk.randTableBelow(rng, o, j)
				err := both(func(rs *randStack) error {
					d := rs.devs[j]
					if err := rs.p.LoadText(d, text, stack.SourceInline); err != nil {
						return err
					}
					return rs.p.Resume(d)
				})
				if err != nil && !isRefusal(err) {
					t.Fatalf("seed %d: swap of %s: %v", seed, walk.devs[j].Name(), err)
				}
				walk.noteDepths()
				comp.noteDepths()
			}
			i := rng.IntN(len(walk.devs))
			dw, dc := walk.devs[i], comp.devs[i]
			if dc.CompiledMap() == nil || dw.CompiledMap() != nil {
				t.Fatalf("seed %d: %s: published maps %v (compiled pool), %v (walking pool)", seed, dc.Name(), dc.CompiledMap() != nil, dw.CompiledMap() != nil)
			}
			published++
			size := int64(dw.Size()) * 512
			op := []stack.Op{stack.OpRead, stack.OpRead, stack.OpRead, stack.OpWrite, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard}[rng.IntN(7)]
			var off, n int64
			switch rng.IntN(4) {
			case 0: // unaligned, short
				off, n = rng.Int64N(size+600), 1+rng.Int64N(1500)
			case 1: // whole sectors
				off, n = rng.Int64N(size/512+2)*512, (1+rng.Int64N(64))*512
			case 2: // the whole device, and a little past it
				off, n = 0, size+rng.Int64N(2)*512
			default: // sectors, anywhere
				off, n = rng.Int64N(size+1), rng.Int64N(size+1)
			}
			fill := byte(rng.Uint32())
			a, b := doReq(dw, op, off, n, fill), doReq(dc, op, off, n, fill)
			requests++
			if a.err != "" {
				failed++
			}
			if a.n != b.n || a.err != b.err || !bytes.Equal(a.data, b.data) {
				t.Fatalf("seed %d step %d: %v of %d+%d on %s:\nwalk:     %v\ncompiled: %v\n%s", seed, step, op, off, n, dw.Name(), a, b, describe(walk))
			}
		}
		for li := range walk.leaves {
			if !bytes.Equal(walk.leaves[li].Data(), comp.leaves[li].Data()) {
				t.Fatalf("seed %d: leaf %s differs at the end\n%s", seed, walk.leaves[li].Name(), describe(walk))
			}
		}
	}
	t.Logf("%d requests (%d failed) through %d published maps", requests, failed, published)
	if requests < iters*10 || failed == 0 || failed == requests {
		t.Fatalf("too few cases: %d requests, %d failed", requests, failed)
	}
}

// TestCompiledMapsPublished follows a device's published map through its
// life: published at resume, off while it or a device below is suspended,
// rebuilt (a new map) when a table below is swapped, off when compiled
// maps are turned off (and not built by a resume then), back when they are
// turned on, rebuilt by a rolled-back swap, gone with the device.
func TestCompiledMapsPublished(t *testing.T) {
	l := stacktest.NewMemLeaf("/pub/a", "a", 4096, false)
	p := stack.NewPool(stacktest.Opener(l))
	bottom := stacktest.MustCreate(t, p, "bottom", "0 2048 linear /pub/a 0")
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear bottom 512")
	c1 := top.CompiledMap()
	if c1 == nil || bottom.CompiledMap() == nil || !c1.Current() {
		t.Fatal("no published maps after resume")
	}
	if got := c1.Lookup(0); got.Kind() != stack.PlaceLeaf || got.Sector != 512 {
		t.Fatalf("top 0 is %v %d", got.Kind(), got.Sector)
	}
	if err := p.Suspend(bottom); err != nil {
		t.Fatal(err)
	}
	if top.CompiledMap() != nil || bottom.CompiledMap() != nil {
		t.Fatal("maps published while bottom is suspended")
	}
	if err := p.LoadText(bottom, "0 2048 linear /pub/a 1000", stack.SourceInline); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(bottom); err != nil {
		t.Fatal(err)
	}
	c2 := top.CompiledMap()
	if c2 == nil || c2 == c1 || !c2.Current() || c1.Current() {
		t.Fatalf("after the swap below: map %p (was %p), current %v", c2, c1, c2 != nil && c2.Current())
	}
	if got := c2.Lookup(0); got.Sector != 1512 {
		t.Fatalf("top 0 lands at %d after the swap, want 1512", got.Sector)
	}
	if err := p.Suspend(top); err != nil {
		t.Fatal(err)
	}
	if top.CompiledMap() != nil || bottom.CompiledMap() == nil {
		t.Fatal("suspending top must unpublish top's map only")
	}
	if err := p.Resume(top); err != nil {
		t.Fatal(err)
	}
	if top.CompiledMap() != c2 {
		t.Fatal("a resume without a swap must publish the same map")
	}
	p.SetCompiledMaps(false)
	if top.CompiledMap() != nil || bottom.CompiledMap() != nil {
		t.Fatal("maps published after SetCompiledMaps(false)")
	}
	if err := p.Suspend(top); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(top); err != nil {
		t.Fatal(err)
	}
	if top.CompiledMap() != nil {
		t.Fatal("a resume published a map with compiled maps off")
	}
	p.SetCompiledMaps(true)
	if c := top.CompiledMap(); c == nil || !c.Current() || c.Lookup(0).Sector != 1512 || bottom.CompiledMap() == nil {
		t.Fatal("SetCompiledMaps(true) did not build and publish the maps")
	}
	// A rolled-back swap below puts the old map's tables back, and a
	// rebuilt map with them.
	tx := p.Begin()
	if err := p.LoadText(bottom, "0 2048 linear /pub/a 7", stack.SourceInline); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(bottom); err != nil {
		t.Fatal(err)
	}
	if got := top.CompiledMap().Lookup(0).Sector; got != 519 {
		t.Fatalf("top 0 at %d in the transaction, want 519", got)
	}
	tx.Rollback()
	c3 := top.CompiledMap()
	if c3 == nil || !c3.Current() || c3.Lookup(0).Sector != 1512 {
		t.Fatalf("after the rollback: map %v", c3)
	}
	if err := p.Remove(top); err != nil {
		t.Fatal(err)
	}
	if top.CompiledMap() != nil {
		t.Fatal("a removed device keeps a published map")
	}
}

// TestCompiledSwapDuringIO swaps the table of the middle of a three-level
// stack round three tables while readers read through the top (run it
// with -race). Every sector of the leaf holds its own number, and table k
// of mid rotates bottom by 100k sectors, so each sector read tells which
// table it went through. A reader notes how many swaps had returned
// before it began (g0) and after it ended (g1): only the tables active
// from swap g0 to swap g1+1 (in progress) may show. A stale map used after
// a swap's resume returned, or a torn sector, fails it.
func TestCompiledSwapDuringIO(t *testing.T) {
	const sectors = 1024
	l := stacktest.NewMemLeaf("/swap/a", "a", sectors, false)
	for s := range sectors {
		b := l.Data()[s*512 : (s+1)*512]
		for i := range b {
			b[i] = byte(s) ^ 0x5a
		}
		b[0], b[1] = byte(s), byte(s>>8)
	}
	cl := &countLeaf{MemLeaf: l}
	p := stack.NewPool(func(string) (stack.Leaf, error) { return cl, nil })
	stacktest.MustCreate(t, p, "bottom", "0 1024 linear /swap/a 0")
	table := func(k int) string {
		if k == 0 {
			return "0 1024 linear bottom 0"
		}
		return fmt.Sprintf("0 %d linear bottom %d\n%d %d linear bottom 0", 1024-100*k, 100*k, 1024-100*k, 100*k)
	}
	mid := stacktest.MustCreate(t, p, "mid", table(0))
	top := stacktest.MustCreate(t, p, "top", "0 1024 striped 2 8 mid 0 mid 512")
	var done atomic.Int64 // swaps whose resume returned
	check := func(buf []byte, off int64, g0, g1 int64) error {
		for k := 0; k < len(buf)/512; k++ {
			s := uint64(off/512) + uint64(k)
			c := s / 8
			m := (c%2)*512 + (c/2)*8 + s%8
			blk := buf[k*512 : (k+1)*512]
			ls := uint64(blk[0]) | uint64(blk[1])<<8
			for i := 2; i < 512; i++ {
				if blk[i] != byte(ls)^0x5a {
					return fmt.Errorf("top sector %d: a torn sector (%x...)", s, blk[:4])
				}
			}
			d := (ls + sectors - m) % sectors
			tk := int64(d / 100)
			if d%100 != 0 || tk > 2 {
				return fmt.Errorf("top sector %d (mid %d) read leaf sector %d: no table maps it there", s, m, ls)
			}
			ok := g1-g0 >= 2
			for g := g0; g <= g1+1 && !ok; g++ {
				ok = g%3 == tk
			}
			if !ok {
				return fmt.Errorf("top sector %d went through table %d, but swaps %d to %d had returned", s, tk, g0, g1)
			}
		}
		return nil
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, compiledSeen atomic.Int64
	errs := make(chan error, 4)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 64*512)
			for !stop.Load() {
				n := (1 + r.IntN(64)) * 512
				off := int64(r.IntN(sectors*512-n+1)) / 512 * 512
				g0 := done.Load()
				if top.CompiledMap() != nil {
					compiledSeen.Add(1)
				}
				if _, err := top.ReadAt(buf[:n], off); err != nil {
					errs <- err
					return
				}
				if err := check(buf[:n], off, g0, done.Load()); err != nil {
					errs <- err
					return
				}
				reads.Add(1)
			}
		}()
	}
	swaps, quiet := 0, 0
	for ; swaps < 300 && len(errs) == 0; swaps++ {
		if swaps%10 == 0 {
			// Once mid's suspend returns, nothing reaches the leaf
			// until it resumes: the readers park.
			if err := p.Suspend(mid); err != nil {
				t.Fatal(err)
			}
			n0 := cl.reads.Load()
			time.Sleep(300 * time.Microsecond)
			if n := cl.reads.Load(); n != n0 {
				t.Fatalf("%d reads reached the leaf while mid was suspended", n-n0)
			}
			quiet++
		}
		if err := p.LoadText(mid, table((swaps+1)%3), stack.SourceInline); err != nil {
			t.Fatal(err)
		}
		if err := p.Resume(mid); err != nil {
			t.Fatal(err)
		}
		done.Add(1)
		if c := top.CompiledMap(); c == nil || !c.Current() {
			t.Fatal("after a swap's resume the top's map is not the current one")
		}
		if swaps%4 == 0 {
			time.Sleep(100 * time.Microsecond) // let the readers through the published map
		}
	}
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d swaps (%d with a pause), %d reads, %d with a published map", swaps, quiet, reads.Load(), compiledSeen.Load())
	if reads.Load() == 0 || compiledSeen.Load() == 0 {
		t.Fatal("no reads through compiled maps")
	}
}

// countLeaf counts the reads that reach a leaf.
type countLeaf struct {
	*stacktest.MemLeaf
	reads atomic.Int64
}

func (l *countLeaf) ReadAt(p []byte, off int64) (int, error) {
	l.reads.Add(1)
	return l.MemLeaf.ReadAt(p, off)
}
