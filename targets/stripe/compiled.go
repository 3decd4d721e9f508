package stripe

import "github.com/daxstack/daxstack/stack"

// StripeLayout declares the stripe pattern Map follows (stack.Striper), so
// that a compiled map describes the whole segment with one periodic piece.
func (s *striped) StripeLayout() (chunk uint64, stripes []stack.Area) {
	return s.chunk, s.Areas()
}
