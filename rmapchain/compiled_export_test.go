package rmapchain

import (
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// AnsweredFast reports whether r answers sectors set of leaf from the
// index (rather than through Propagate).
func AnsweredFast(r *Reverse, leaf *stack.Dev, set extent.Set) bool {
	_, ok := r.fast(leaf, set)
	return ok
}

// IndexAnswer is the index's own answer for sectors set of leaf, stripes
// included (which the fast path leaves to Propagate), when it has one.
func IndexAnswer(r *Reverse, leaf *stack.Dev, set extent.Set) (map[*stack.Dev]extent.Set, bool) {
	return r.answer(leaf, set, true)
}
