package stack

// Striper is implemented by targets whose placement is a stripe pattern,
// so that a compiled map (see Compiled) can describe a whole segment with
// one periodic piece instead of one piece per chunk. The pattern is the
// kernel's dm-stripe: with k = len(stripes), chunk c = off / chunk of the
// segment lives on stripe c % k, at
//
//	stripes[c%k].Start + (c/k)*chunk + off%chunk
//
// of stripes[c%k].Dev, and Map(off).Run is chunk - off%chunk. Each stripe's
// Len is the segment's length divided by k, a multiple of chunk.
//
// It is a promise like Map's Run: the compiled map takes the pattern as
// given (it checks a few chunks against Map when it compiles, and ignores a
// pattern that disagrees), so a target must implement it only when Map is
// exactly this function and has no other behaviour.
type Striper interface {
	StripeLayout() (chunk uint64, stripes []Area)
}
