package flakey

import (
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// fakeClock is a CLOCK_BOOTTIME the test sets.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Duration
	boot string
}

func (c *fakeClock) Boottime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) BootID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot
}

func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = d
}

func (c *fakeClock) reboot(id string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot, c.now = id, d
}

// env is a pool over the guest's ramdisks (with memory) whose targets
// get the fake clock and a seeded random source.
type env struct {
	rd    *transcript.Ramdisks
	pool  *stack.Pool
	clock *fakeClock
}

func newEnv(seed uint64) *env {
	rd := transcript.NewRamdisks(false)
	e := &env{rd: rd, pool: rd.Pool(), clock: &fakeClock{now: 1000 * time.Second, boot: "boot-1"}}
	e.pool.SetTargetEnv(e.clock, rand.New(rand.NewPCG(seed, seed)))
	return e
}

// build creates a device with the table and returns its first flakey
// target.
func (e *env) build(t testing.TB, name, table string) *flakey {
	t.Helper()
	d := stacktest.MustCreate(t, e.pool, name, table)
	for _, s := range d.Active().Segments() {
		if f, ok := s.Target.(*flakey); ok {
			return f
		}
	}
	t.Fatalf("no flakey segment in %q", table)
	return nil
}

// doIO does with one request what the engine does with each request
// reaching a segment: MapIO; then, for Remap, the read or write at the
// place Map gives (a write of what the request's Data holds after
// MapIO); then EndIO. It returns the request's outcome.
func doIO(tgt stack.Target, b *stack.Bio) error {
	act, err := tgt.(stack.IOMapper).MapIO(b)
	switch act {
	case stack.Kill:
		if err == nil {
			err = syscall.EIO
		}
		return err
	case stack.Done:
		return nil
	}
	if err != nil {
		return err
	}
	if b.Op == stack.OpRead || b.Op == stack.OpWrite {
		m, err := tgt.Map(b.Pos / stack.SectorSize)
		if err != nil {
			return err
		}
		leaf := m.Dev.Leaf()
		off := int64(m.Sector*stack.SectorSize + b.Pos%stack.SectorSize)
		if b.Op == stack.OpRead {
			_, err = leaf.ReadAt(b.Data, off)
		} else {
			_, err = leaf.WriteAt(b.Data, off)
		}
		if e, ok := tgt.(stack.EndIOer); ok {
			return e.EndIO(b, err)
		}
		return err
	}
	if e, ok := tgt.(stack.EndIOer); ok {
		return e.EndIO(b, nil)
	}
	return nil
}

func read(sector, n uint64) *stack.Bio {
	return &stack.Bio{Op: stack.OpRead, Pos: sector * stack.SectorSize, Len: n * stack.SectorSize, Data: make([]byte, n*stack.SectorSize)}
}

func write(sector uint64, data []byte) *stack.Bio {
	return &stack.Bio{Op: stack.OpWrite, Pos: sector * stack.SectorSize, Len: uint64(len(data)), Data: data}
}
