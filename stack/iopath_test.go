package stack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// ioPool returns a pool over one leaf "/l" of 4096 sectors whose bytes are
// a pattern, and the leaf.
func ioPool(t *testing.T) (*stack.Pool, *stacktest.MemLeaf) {
	t.Helper()
	l := stacktest.NewMemLeaf("/l", "l", 4096, false)
	for i := range l.Data() {
		l.Data()[i] = byte(i*7 + i/512)
	}
	return stack.NewPool(stacktest.Opener(l)), l
}

// TestRequestGranularity: a request reaches a target with run-time
// behaviour as one Bio per segment, split further only at the segment's
// MaxIOLen windows (counted from the segment start) and by the levels
// above (a stripe's chunks), before anything below splits it; pure levels
// in between change nothing of that, and the bytes are the leaf's.
func TestRequestGranularity(t *testing.T) {
	p, l := ioPool(t)
	a, b := newCtl(t, "a"), newCtl(t, "b")
	stacktest.MustCreate(t, p, "mid", fmt.Sprintf("0 1024 fake /l 0 %s\n1024 1024 fake /l 1024 %s 64", ctlRef(t, "a"), ctlRef(t, "b")))
	top := stacktest.MustCreate(t, p, "top", "0 2048 linear mid 0")

	off, end := int64(100*512+7), int64(1500*512+3)
	buf := make([]byte, end-off)
	if n, err := top.ReadAt(buf, off); err != nil || n != len(buf) {
		t.Fatalf("read: %d, %v", n, err)
	}
	if !bytes.Equal(buf, l.Data()[off:end]) {
		t.Fatal("read through the stack differs from the leaf")
	}
	want := []bioRec{{stack.OpRead, uint64(off), 1024*512 - uint64(off)}}
	if got := a.Bios(); !slices.Equal(got, want) {
		t.Errorf("segment A got %v, want %v", got, want)
	}
	var wantB []bioRec
	for s := uint64(0); s*512 < uint64(end)-1024*512; s += 64 {
		n := min(64*512, uint64(end)-1024*512-s*512)
		wantB = append(wantB, bioRec{stack.OpRead, s * 512, n})
	}
	if got := b.Bios(); !slices.Equal(got, wantB) {
		t.Errorf("segment B got %v, want %v", got, wantB)
	}
	// EndIO once per Bio, each after its parts, with no error.
	if got := b.Ends(); len(got) != len(wantB) || got[0].Err != nil {
		t.Errorf("segment B ends %v", got)
	}

	// Under a stripe each chunk is a request of its own at the level below.
	c := newCtl(t, "c")
	stacktest.MustCreate(t, p, "fa", "0 1024 fake /l 2048 "+ctlRef(t, "c"))
	stacktest.MustCreate(t, p, "fb", "0 1024 fake /l 3072 "+ctlRef(t, "c"))
	s := stacktest.MustCreate(t, p, "s", "0 2048 striped 2 16 fa 0 fb 0")
	buf = make([]byte, 64*512)
	if _, err := s.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	wantC := []bioRec{{stack.OpRead, 0, 16 * 512}, {stack.OpRead, 0, 16 * 512}, {stack.OpRead, 16 * 512, 16 * 512}, {stack.OpRead, 16 * 512, 16 * 512}}
	if got := c.Bios(); !slices.Equal(got, wantC) {
		t.Errorf("stripe over fakes: %v, want %v", got, wantC)
	}
	for i, chunk := range []int64{2048, 3072, 2048 + 16, 3072 + 16} {
		if !bytes.Equal(buf[i*16*512:(i+1)*16*512], l.Data()[chunk*512:(chunk+16)*512]) {
			t.Fatalf("chunk %d differs from leaf sector %d", i, chunk)
		}
	}
}

// TestEndIOFirstError: EndIO is called once per Bio, after every part of
// it below has finished, with the first error; the request reports how far
// it got. MapIO's Kill and Done are seen by EndIO too.
func TestEndIOFirstError(t *testing.T) {
	p, l := ioPool(t)
	a := newCtl(t, "a")
	stacktest.MustCreate(t, p, "d", "0 1024 fake /l 0 "+ctlRef(t, "a"))
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear d 0")
	l.Poison(extent.Of(extent.Extent{Start: 40, Len: 2}))
	buf := make([]byte, 100*512)
	n, err := top.ReadAt(buf, 0)
	var ioe *stack.IOError
	if !errors.As(err, &ioe) || ioe.Device != "top" || ioe.Sector != 40 || n != 40*512 {
		t.Fatalf("read over poison: %d, %v", n, err)
	}
	ends := a.Ends()
	if len(ends) != 1 || ends[0].Pos != 0 || ends[0].Len != 100*512 || !errors.Is(ends[0].Err, syscall.EIO) {
		t.Fatalf("EndIO calls %v", ends)
	}

	a.set(func(c *fakeCtl) { c.act, c.killErr = stack.Kill, nil; c.ends = nil })
	n, err = top.ReadAt(buf[:512], 8*512)
	if !errors.As(err, &ioe) || ioe.Device != "d" || ioe.Sector != 8 || !errors.Is(err, syscall.EIO) || n != 0 {
		t.Fatalf("killed read: %d, %v", n, err)
	}
	if ends := a.Ends(); len(ends) != 1 || ends[0].Err == nil {
		t.Fatalf("EndIO of a killed Bio: %v", ends)
	}

	a.set(func(c *fakeCtl) { c.act = stack.Done; c.ends = nil })
	before := bytes.Clone(l.Data()[:512])
	if n, err := top.WriteAt(bytes.Repeat([]byte{1}, 512), 0); err != nil || n != 512 {
		t.Fatalf("write completed by the target: %d, %v", n, err)
	}
	if !bytes.Equal(l.Data()[:512], before) {
		t.Fatal("a write the target completed itself reached the leaf")
	}
	if n, err := top.ReadAt(buf[:512], 0); err != nil || n != 512 || buf[0] != 0xdd {
		t.Fatalf("read answered by the target: %d, %v, % x", n, err, buf[:4])
	}
}

// TestStripeErrorsOnFastPath: striped stays on the fast path and still
// counts a failure against the stripe whose device failed ("D").
func TestStripeErrorsOnFastPath(t *testing.T) {
	x := stacktest.NewMemLeaf("/x", "x", 1024, false)
	y := stacktest.NewMemLeaf("/y", "y", 1024, false)
	p := stack.NewPool(stacktest.Opener(x, y))
	s := stacktest.MustCreate(t, p, "s", "0 2048 striped 2 8 /x 0 /y 0")
	top := stacktest.MustCreate(t, p, "top", "0 1000 linear s 24")
	buf := make([]byte, 4096)
	if allocs := testing.AllocsPerRun(20, func() { top.ReadAt(buf, 0) }); allocs != 0 {
		t.Errorf("a read through pure levels allocates %v times", allocs)
	}
	if got := s.Active().StatusLines()[0]; got != "0 2048 striped 2 /x /y 1 AA" {
		t.Fatalf("status %q", got)
	}
	y.Poison(extent.Of(extent.Extent{Start: 20, Len: 1})) // s sector 44: top sector 20
	if _, err := top.ReadAt(make([]byte, 32*512), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read over poison: %v", err)
	}
	if got := s.Active().StatusLines()[0]; got != "0 2048 striped 2 /x /y 1 AD" {
		t.Fatalf("status after the failure %q", got)
	}
}

// TestDelays: a request waits in a delay outside every lock: other
// devices' I/O and suspends go on; the delaying device's suspend lets it
// go at once (and no new one waits until resume); the client's context
// ends a wait.
func TestDelays(t *testing.T) {
	p, _ := ioPool(t)
	c := newCtl(t, "c")
	c.set(func(c *fakeCtl) { c.wait, c.noIOMap = time.Hour, true })
	slow := stacktest.MustCreate(t, p, "slow", "0 1024 fake /l 0 "+ctlRef(t, "c"))
	other := stacktest.MustCreate(t, p, "other", "0 1024 linear /l 1024")

	done := make(chan error, 1)
	go func() {
		_, err := slow.ReadAt(make([]byte, 512), 0)
		done <- err
	}()
	waitFor(t, func() bool { return len(c.holdsCopy()) == 1 })
	c.set(func(c *fakeCtl) { c.events = nil })
	if _, err := other.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Suspend(other); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(other); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the delayed read ended early: %v", err)
	default:
	}
	// The delaying device's suspend lets it go.
	if err := p.Suspend(slow); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("delayed read: %v", err)
	}
	if ev := c.Events(); !slices.Equal(ev, []string{"presuspend", "postsuspend"}) {
		t.Fatalf("hooks %v", ev)
	}
	if err := p.Resume(slow); err != nil {
		t.Fatal(err)
	}

	// The context ends a wait.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := slow.Do(ctx, stack.Request{Op: stack.OpRead, Data: make([]byte, 512)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with a context: %v", err)
	}
}

func (c *fakeCtl) holdsCopy() []bioRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bioRec(nil), c.holds...)
}

// TestUpperSuspendOverDelay: a suspend of a device above a delaying one
// waits for the request held in the delay (it passed the upper device),
// without stopping anything else; the delaying device's own suspend lets
// the request go, and then both suspends are done. No deadlock.
func TestUpperSuspendOverDelay(t *testing.T) {
	p, _ := ioPool(t)
	c := newCtl(t, "c")
	c.set(func(c *fakeCtl) { c.wait = time.Hour })
	slow := stacktest.MustCreate(t, p, "slow", "0 1024 fake /l 0 "+ctlRef(t, "c"))
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear slow 0")
	read := make(chan error, 1)
	go func() {
		_, err := top.ReadAt(make([]byte, 512), 0)
		read <- err
	}()
	waitFor(t, func() bool { return len(c.holdsCopy()) == 1 })
	suspended := make(chan error, 1)
	go func() { suspended <- p.Suspend(top) }()
	select {
	case err := <-suspended:
		t.Fatalf("top suspended while a request that passed it waits below: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	if !top.Suspended() {
		t.Fatal("top is not suspended")
	}
	if err := p.Suspend(slow); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-suspended; err != nil {
		t.Fatalf("suspend top: %v", err)
	}
	for _, d := range []*stack.Device{slow, top} {
		if err := p.Resume(d); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSuspendGivesUp: a suspend whose wait for the I/O in flight is
// cancelled undoes itself (PreSuspendUndo), and the device runs again.
func TestSuspendGivesUp(t *testing.T) {
	p, _ := ioPool(t)
	c := newCtl(t, "c")
	c.set(func(c *fakeCtl) { c.wait = time.Hour })
	stacktest.MustCreate(t, p, "slow", "0 1024 fake /l 0 "+ctlRef(t, "c"))
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear slow 0")
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go top.Do(rctx, stack.Request{Op: stack.OpRead, Data: make([]byte, 512)})
	waitFor(t, func() bool { return len(c.holdsCopy()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.SuspendContext(ctx, top); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("suspend: %v", err)
	}
	if top.Suspended() {
		t.Fatal("top stays suspended after its suspend gave up")
	}
	// A new read passes top again and waits in the delay like the first.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := top.Do(ctx2, stack.Request{Op: stack.OpRead, Off: 4096, Data: make([]byte, 512)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second read: %v", err)
	}
	if n := len(c.holdsCopy()); n != 2 {
		t.Fatalf("%d requests reached the delay, want 2", n)
	}
}

// TestDtrOnce: a table's destructors run once, when it leaves for good:
// swapped out, its inactive slot cleared or replaced, its device removed,
// or built and discarded, or refused half way.
func TestDtrOnce(t *testing.T) {
	p, _ := ioPool(t)
	c := newCtl(t, "c")
	line := "0 8 fake /l 0 " + ctlRef(t, "c")
	d := stacktest.MustCreate(t, p, "d", line)
	count := func() (built, dtrs int, twice bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, f := range c.built {
			if n := c.dtrs[f]; n > 0 {
				dtrs++
				twice = twice || n > 1
			}
		}
		return len(c.built), dtrs, twice
	}
	steps := []struct {
		name string
		do   func() error
		dtrs int
	}{
		{"live", func() error { return nil }, 0},
		{"swap", func() error {
			if err := p.LoadText(d, line, ""); err != nil {
				return err
			}
			return p.Resume(d)
		}, 1},
		{"replace inactive", func() error {
			if err := p.LoadText(d, line, ""); err != nil {
				return err
			}
			return p.LoadText(d, line, "")
		}, 2},
		{"clear", func() error { return p.Clear(d) }, 3},
		{"build and discard", func() error {
			lines, _ := stack.ParseText(line, "")
			tb, err := p.Build(d, lines)
			tb.Destroy()
			tb.Destroy()
			return err
		}, 4},
		{"refused half way", func() error {
			if err := p.LoadText(d, line+"\n8 8 fake /l 0 nosuchctl", ""); err == nil {
				return errors.New("accepted")
			}
			return nil
		}, 5},
		{"remove", func() error { return p.Remove(d) }, 6},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		built, dtrs, twice := count()
		if twice || dtrs != s.dtrs {
			t.Fatalf("after %s: %d of %d targets destroyed (twice: %v), want %d", s.name, dtrs, built, twice, s.dtrs)
		}
	}
}

// TestFlush: a flush reaches every segment's children down to the leaves,
// each leaf synced once, targets with run-time behaviour seeing it as a
// Bio of its own; error and zero segments take none.
func TestFlush(t *testing.T) {
	x := stacktest.NewMemLeaf("/x", "x", 1024, false)
	y := stacktest.NewMemLeaf("/y", "y", 1024, false)
	z := stacktest.NewMemLeaf("/z", "z", 1024, false)
	w := stacktest.NewMemLeaf("/w", "w", 1024, false)
	p := stack.NewPool(stacktest.Opener(x, y, z, w))
	c := newCtl(t, "c")
	stacktest.MustCreate(t, p, "s", "0 512 striped 2 8 /x 0 /y 0")
	stacktest.MustCreate(t, p, "f", "0 512 fake /z 0 "+ctlRef(t, "c"))
	top := stacktest.MustCreate(t, p, "top", "0 512 linear s 0\n512 512 linear f 0\n1024 8 error /w 0\n1032 8 zero\n1040 8 linear /x 600")
	if err := top.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*stacktest.MemLeaf{x, y, z} {
		if l.Syncs() != 1 {
			t.Errorf("leaf %s synced %d times", l.Name(), l.Syncs())
		}
	}
	if w.Syncs() != 0 {
		t.Errorf("the error segment's device was flushed")
	}
	if b := c.Bios(); len(b) != 1 || b[0].Op != stack.OpFlush || b[0].Len != 0 {
		t.Errorf("the fake saw %v", b)
	}
}

// TestWriteZeroesAndDiscard: write-zeroes writes zeros and clears the
// poison it covers whole, like a write; a discard changes neither data nor
// poison on a leaf that does not discard; the zero target drops both and
// the error target fails them.
func TestWriteZeroesAndDiscard(t *testing.T) {
	p, l := ioPool(t)
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear /l 0\n1024 8 zero\n1032 8 error")
	l.Poison(extent.Of(extent.Extent{Start: 10, Len: 2}))
	before := bytes.Clone(l.Data()[:64*512])
	if n, err := top.Do(context.Background(), stack.Request{Op: stack.OpDiscard, Off: 0, Len: 64 * 512}); err != nil || n != 64*512 {
		t.Fatalf("discard: %d, %v", n, err)
	}
	if !bytes.Equal(l.Data()[:64*512], before) || !l.BadBlocks().Contains(10) {
		t.Fatal("a discard changed the leaf")
	}
	if n, err := top.Do(context.Background(), stack.Request{Op: stack.OpWriteZeroes, Off: 8 * 512, Len: 8 * 512}); err != nil || n != 8*512 {
		t.Fatalf("write-zeroes: %d, %v", n, err)
	}
	if !bytes.Equal(l.Data()[8*512:16*512], make([]byte, 8*512)) || !l.BadBlocks().Empty() {
		t.Fatalf("write-zeroes left %v bad", l.BadBlocks())
	}
	if _, err := top.Do(context.Background(), stack.Request{Op: stack.OpWriteZeroes, Off: 1024 * 512, Len: 8 * 512}); err != nil {
		t.Fatalf("write-zeroes to zero: %v", err)
	}
	if _, err := top.Do(context.Background(), stack.Request{Op: stack.OpDiscard, Off: 1032 * 512, Len: 512}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("discard of an error segment: %v", err)
	}
}

// TestReadOnlyAndNoWait: a read-only device refuses what changes data
// with EROFS; a pool that does not wait fails I/O to a suspended device
// with EAGAIN; a request parked on a suspended device ends with its
// context; a removed device fails with ENXIO.
func TestReadOnlyAndNoWait(t *testing.T) {
	p, _ := ioPool(t)
	d := stacktest.MustCreate(t, p, "d", "0 1024 linear /l 0")
	top := stacktest.MustCreate(t, p, "top", "0 1024 linear d 0")
	top.SetReadOnly(true)
	for _, op := range []stack.Op{stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard} {
		if _, err := top.Do(context.Background(), stack.Request{Op: op, Len: 512, Data: make([]byte, 512)}); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%v on a read-only device: %v", op, err)
		}
	}
	if _, err := top.ReadAt(make([]byte, 512), 0); err != nil {
		t.Errorf("read of a read-only device: %v", err)
	}
	top.SetReadOnly(false)

	if err := p.Suspend(d); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := top.Do(ctx, stack.Request{Op: stack.OpRead, Data: make([]byte, 512)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("parked read with a context: %v", err)
	}
	p.SetNoWait(true)
	var se *stack.SuspendedError
	if _, err := top.ReadAt(make([]byte, 512), 0); !errors.As(err, &se) || se.Device != "d" || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("no-wait read: %v", err)
	}
	p.SetNoWait(false)
	if err := p.Resume(d); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(top); err != nil {
		t.Fatal(err)
	}
	if _, err := top.ReadAt(make([]byte, 512), 0); !errors.Is(err, stack.ErrRemoved) || !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("read of a removed device: %v", err)
	}
}

// TestOpenBusy: an open device cannot be removed.
func TestOpenBusy(t *testing.T) {
	p, _ := ioPool(t)
	d := stacktest.MustCreate(t, p, "d", "0 8 linear /l 0")
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(d); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove of an open device: %v", err)
	}
	d.Close()
	if err := p.Remove(d); err != nil {
		t.Fatal(err)
	}
	if err := d.Open(); !errors.Is(err, stack.ErrRemoved) {
		t.Fatalf("open of a removed device: %v", err)
	}
}

// TestOneWalker: past the end of a device below, I/O, Trace and MapRange
// agree: the sector fails with EIO at that device.
func TestOneWalker(t *testing.T) {
	p, _ := ioPool(t)
	child := stacktest.MustCreate(t, p, "child", "0 100 linear /l 0")
	top := stacktest.MustCreate(t, p, "top", "0 100 linear child 0")
	if err := p.LoadText(child, "0 50 linear /l 0", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(child); err != nil {
		t.Fatal(err)
	}
	_, err := top.ReadAt(make([]byte, 512), 60*512)
	var ioe *stack.IOError
	if !errors.As(err, &ioe) || ioe.Device != "child" || ioe.Sector != 60 || !errors.Is(err, syscall.EIO) {
		t.Fatalf("read past the child's end: %v", err)
	}
	steps, err := p.Trace(top, 60)
	if err != nil || len(steps) != 2 || steps[1].Device != child || !errors.Is(steps[1].Err, syscall.EIO) {
		t.Fatalf("trace: %+v, %v", steps, err)
	}
	pieces, err := p.MapRange(top, 40, 20)
	if err != nil || len(pieces) != 2 || pieces[0].Leaf == nil || !pieces[1].Killed || !pieces[1].PastEnd || pieces[1].Start != 50 {
		t.Fatalf("map range: %+v, %v", pieces, err)
	}
	// At the top, a read stops at the end and a write runs out of space.
	if n, err := child.ReadAt(make([]byte, 1024), 49*512); n != 512 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if n, err := child.WriteAt(make([]byte, 1024), 49*512); n != 512 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write across the end: %d, %v", n, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
