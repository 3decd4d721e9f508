package control

import (
	"context"

	"github.com/daxstack/daxstack/stack"
)

// A method that changes the pool and then panics, for TestPanicReleasesTheLock.
func init() {
	register("test-panic", true, func(e *Engine, _ context.Context, _ Empty) (Empty, error) {
		e.op = newOpState()
		d, _ := e.pool.Create("half-made", "")
		_ = d
		var t *stack.Table
		_ = t.Segments()[0] // index out of range: a bug
		return Empty{}, nil
	})
}
