package serve

import (
	"context"
	"sync"

	"github.com/daxstack/daxstack/control"
)

// queue carries the engine's lifecycle changes from its commits (where
// nothing may wait) to the worker, and tells who waits how far the worker
// got.
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []control.DeviceChange
	pushed  uint64 // changes pushed so far
	done    uint64 // changes applied so far
	closed  bool
}

func (q *queue) init() { q.cond = sync.NewCond(&q.mu) }

// push is the engine's watcher: it only queues.
func (q *queue) push(cs []control.DeviceChange) {
	q.mu.Lock()
	q.pending = append(q.pending, cs...)
	q.pushed += uint64(len(cs))
	q.mu.Unlock()
	q.cond.Broadcast()
}

// take waits for changes and returns them all; ok is false once closed.
func (q *queue) take() (cs []control.DeviceChange, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pending) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	cs, q.pending = q.pending, nil
	return cs, true
}

// applied records that n more changes are applied.
func (q *queue) applied(n int) {
	q.mu.Lock()
	q.done += uint64(n)
	q.mu.Unlock()
	q.cond.Broadcast()
}

// wait returns once every change pushed before it was called is applied,
// the queue is closed or ctx ends.
func (q *queue) wait(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.mu.Unlock()
		q.cond.Broadcast()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.pushed
	for q.done < target && !q.closed && ctx.Err() == nil {
		q.cond.Wait()
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
