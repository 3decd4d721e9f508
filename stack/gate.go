package stack

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// gate lets Suspend wait for the I/O in flight without making I/O share a
// counter. Each I/O counts itself in one of several padded shards of the
// current generation, then looks at the suspended flags of the devices it
// maps through. Suspend sets a flag and then, twice, flips the generation
// and waits for the shards of the old one to drain (the scheme of the
// kernel's SRCU): an I/O that counted itself before the flag was set is
// waited for, and one that counted itself after sees the flag.
type gate struct {
	_   [64]byte // keep gen off the cache lines of the fields before
	gen atomic.Uint32
	_   [60]byte // and off the counters' lines
	cnt [2][gateShards]paddedCounter
	mu  sync.Mutex // serialises synchronize
}

const gateShards = 16

type paddedCounter struct {
	n atomic.Int64
	_ [56]byte
}

type gateToken struct {
	gen   uint32
	shard uint32
}

func (g *gate) enter() gateToken {
	t := gateToken{gen: g.gen.Load() & 1, shard: shardHint() % gateShards}
	g.cnt[t.gen][t.shard].n.Add(1)
	return t
}

func (g *gate) exit(t gateToken) { g.cnt[t.gen][t.shard].n.Add(-1) }

// shardHint picks a counter shard for the calling goroutine: a hash of its
// stack address. A goroutine keeps using the same shard, whose cache line
// then stays with its core, while goroutines on other cores mostly use
// others (a random shard would move the line between cores on half the
// I/Os).
func shardHint() uint32 {
	var x byte
	h := uint64(uintptr(unsafe.Pointer(&x))>>12) * 0x9e3779b97f4a7c15
	return uint32(h >> 32)
}

// synchronize returns once every I/O that entered before it was called has
// exited.
func (g *gate) synchronize() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range 2 {
		old := (g.gen.Add(1) - 1) & 1
		for wait := time.Microsecond; !g.drained(old); wait = min(2*wait, time.Millisecond) {
			time.Sleep(wait)
		}
	}
}

func (g *gate) drained(gen uint32) bool {
	for i := range g.cnt[gen] {
		if g.cnt[gen][i].n.Load() != 0 {
			return false
		}
	}
	return true
}
