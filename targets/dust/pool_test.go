package dust

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// I/O through the pool's I/O path, as clients see it: the engine cuts
// reads and writes at every block (SetMaxIOLen), sends a discard whole, a
// write-zeroes as writes of zeros, one flush per segment, and hears the
// target's changes (Pool.OnTargetChange).

type poolEnv struct {
	rd   *transcript.Ramdisks
	dev  *stack.Device
	dust *dust

	mu      sync.Mutex
	changes []stack.TargetChange
}

func newPoolEnv(t *testing.T, table string) *poolEnv {
	t.Helper()
	e := &poolEnv{rd: transcript.NewRamdisks(false)}
	p := e.rd.Pool()
	p.OnTargetChange(func(c stack.TargetChange) {
		e.mu.Lock()
		e.changes = append(e.changes, c)
		e.mu.Unlock()
	})
	e.dev = stacktest.MustCreate(t, p, "d", table)
	for _, s := range e.dev.Active().Segments() {
		if d, ok := s.Target.(*dust); ok {
			e.dust = d
		}
	}
	return e
}

// cleared returns the sectors the changes reported since the last call
// cleared (device sectors), and how many reports there were.
func (e *poolEnv) cleared() (extent.Set, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s extent.Set
	for _, c := range e.changes {
		s = s.Union(c.Cleared.Shift(int64(c.Table.Segments()[c.Segment].Begin)))
	}
	n := len(e.changes)
	e.changes = nil
	return s, n
}

func (e *poolEnv) do(op stack.Op, sector, sectors uint64) error {
	r := stack.Request{Op: op, Off: int64(sector * stack.SectorSize), Len: int64(sectors * stack.SectorSize)}
	if op == stack.OpRead || op == stack.OpWrite {
		r.Data = make([]byte, r.Len)
	}
	if op == stack.OpFlush {
		return e.dev.Flush(context.Background())
	}
	_, err := e.dev.Do(context.Background(), r)
	return err
}

func blocks(d *dust) []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []uint64
	for b := range d.blocks {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

// TestPoolIO: the kernel's dust behaviour through the I/O path, with the
// list (blocks of 1 KiB from the ramdisk's start, the offset 4 sectors
// in) and the reports of what cleared.
func TestPoolIO(t *testing.T) {
	e := newPoolEnv(t, "0 8 linear /dev/ram1 0\n8 1000 dust /dev/ram0 4 1024")
	d := e.dust
	// Device sector s >= 8 is ram0 sector s-4, block (s-4)/2.
	msg(t, d, "addbadblock", "10") // device sectors 24, 25
	msg(t, d, "addbadblock", "11", "2")
	msg(t, d, "addbadblock", "20") // device 44, 45
	msg(t, d, "addbadblock", "21") // device 46, 47

	// Bypass: nothing fails, writes clear nothing.
	for _, op := range []stack.Op{stack.OpRead, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard, stack.OpFlush} {
		if err := e.do(op, 20, 12); err != nil {
			t.Fatalf("bypass %v: %v", op, err)
		}
	}
	if got := blocks(d); !slices.Equal(got, []uint64{10, 11, 20, 21}) {
		t.Fatalf("bypass I/O changed the list: %v", got)
	}
	msg(t, d, "enable")

	// A read over listed blocks fails at the first, as an EIO a dust
	// BlockError carries; the bytes before it are read.
	buf := make([]byte, 8*512)
	n, err := e.dev.ReadAt(buf, 20*512)
	var be *BlockError
	var ioe *stack.IOError
	if !errors.As(err, &be) || be.Block != 10 || !errors.Is(err, syscall.EIO) || !errors.As(err, &ioe) || ioe.Sector != 24 || n != 4*512 {
		t.Fatalf("read over block 10: %d, %v", n, err)
	}
	if err := e.do(stack.OpRead, 20, 4); err != nil {
		t.Fatalf("read before the block: %v", err)
	}

	// A write over 10 and 11: 10 clears, 11 uses up one of its two
	// fails, and the request fails (at 11, device sector 26).
	err = e.do(stack.OpWrite, 24, 4)
	if !errors.As(err, &be) || be.Block != 11 {
		t.Fatalf("write over 10 and 11: %v", err)
	}
	if got := blocks(d); !slices.Equal(got, []uint64{11, 20, 21}) {
		t.Fatalf("after the write: %v", got)
	}
	if c, _ := e.cleared(); !c.Equal(extent.Of(extent.Extent{Start: 24, Len: 2})) {
		t.Errorf("the write reported %v cleared", c)
	}
	// A write-zeroes is writes of zeros, one per block: 11 fails once
	// more, then clears.
	copy(e.rd.Ram0.Data()[22*512:], bytes.Repeat([]byte{9}, 1024))
	if err := e.do(stack.OpWriteZeroes, 26, 2); err == nil {
		t.Fatal("write-zeroes over 11 with a fail left")
	}
	if err := e.do(stack.OpWriteZeroes, 26, 2); err != nil {
		t.Fatalf("write-zeroes over 11: %v", err)
	}
	if !bytes.Equal(e.rd.Ram0.Data()[22*512:24*512], make([]byte, 1024)) {
		t.Error("the write-zeroes did not zero")
	}
	if got := blocks(d); !slices.Equal(got, []uint64{20, 21}) {
		t.Fatalf("after the write-zeroes: %v", got)
	}
	// A discard goes whole: judged by its first sector, it clears 20 but
	// not 21.
	discards := e.rd.Ram0.Discards()
	if err := e.do(stack.OpDiscard, 44, 4); err != nil {
		t.Fatal(err)
	}
	if got := blocks(d); !slices.Equal(got, []uint64{21}) {
		t.Fatalf("after the discard: %v", got)
	}
	if e.rd.Ram0.Discards() != discards+1 {
		t.Errorf("the discard reached ram0 %d times", e.rd.Ram0.Discards()-discards)
	}
	if c, _ := e.cleared(); !c.Equal(extent.Of(extent.Extent{Start: 26, Len: 2}, extent.Extent{Start: 44, Len: 2})) {
		t.Errorf("reported %v cleared", c)
	}

	// A flush: one per segment; dust's is an empty write at the device's
	// sector 0, segment offset -8, ram0 sector -4 (wrapping): no block.
	syncs0, syncs1 := e.rd.Ram0.Syncs(), e.rd.Ram1.Syncs()
	if err := e.do(stack.OpFlush, 0, 0); err != nil {
		t.Fatal(err)
	}
	if e.rd.Ram0.Syncs() != syncs0+1 || e.rd.Ram1.Syncs() != syncs1+1 {
		t.Errorf("the flush synced ram0 %d and ram1 %d times", e.rd.Ram0.Syncs()-syncs0, e.rd.Ram1.Syncs()-syncs1)
	}
}

// TestPoolFlushJudged: a dust segment at the start of its table judges a
// flush by the block holding its offset, as the kernel's dust_map does
// with an empty flush bio: a write-fail count fails it, then it clears
// the block.
func TestPoolFlushJudged(t *testing.T) {
	e := newPoolEnv(t, "0 1000 dust /dev/ram0 8 512")
	msg(t, e.dust, "addbadblock", "8", "1")
	msg(t, e.dust, "enable")
	if err := e.do(stack.OpFlush, 0, 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush with a fail left on block 8: %v", err)
	}
	if err := e.do(stack.OpFlush, 0, 0); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := blocks(e.dust); len(got) != 0 {
		t.Fatalf("after the flushes: %v", got)
	}
}
