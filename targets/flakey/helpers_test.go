package flakey

import (
	"context"
	"math/rand/v2"
	"sync"
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

// doIO sends one request, shaped as the Bio b (Pos and Len from the start
// of the device, Data: a read's buffer or a write's bytes), through the
// pool's I/O path to d, and returns its outcome.
func doIO(d *stack.Device, b *stack.Bio) error {
	if b.Op == stack.OpFlush {
		return d.Flush(context.Background())
	}
	_, err := d.Do(context.Background(), stack.Request{Op: b.Op, Off: int64(b.Pos), Len: int64(b.Len), Data: b.Data, FUA: b.FUA})
	return err
}

// devOf returns the device whose active table holds f.
func (e *env) devOf(t testing.TB, f *flakey) *stack.Device {
	t.Helper()
	for _, d := range e.pool.Devices() {
		for _, s := range d.Active().Segments() {
			if s.Target == stack.Target(f) {
				return d
			}
		}
	}
	t.Fatal("no device holds the target")
	return nil
}

func read(sector, n uint64) *stack.Bio {
	return &stack.Bio{Op: stack.OpRead, Pos: sector * stack.SectorSize, Len: n * stack.SectorSize, Data: make([]byte, n*stack.SectorSize)}
}

func write(sector uint64, data []byte) *stack.Bio {
	return &stack.Bio{Op: stack.OpWrite, Pos: sector * stack.SectorSize, Len: uint64(len(data)), Data: data}
}
