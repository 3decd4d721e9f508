package extent

import (
	"fmt"
	"strconv"
)

// MaxSector bounds every sector number and length this package handles
// (2^62 sectors, 2 ZiB). Keeping values below it lets the arithmetic use
// signed differences and products without overflow.
const MaxSector = uint64(1) << 62

// Extent is the half-open sector range [Start, Start+Len).
type Extent struct {
	Start uint64
	Len   uint64
}

// End returns the first sector after e.
func (e Extent) End() uint64 { return e.Start + e.Len }

// Empty reports whether e holds no sectors.
func (e Extent) Empty() bool { return e.Len == 0 }

// Contains reports whether sector s lies in e.
func (e Extent) Contains(s uint64) bool { return s >= e.Start && s-e.Start < e.Len }

// Overlaps reports whether e and o share a sector.
func (e Extent) Overlaps(o Extent) bool {
	return e.Len > 0 && o.Len > 0 && e.Start < o.End() && o.Start < e.End()
}

// Intersect returns the sectors e and o share (possibly empty).
func (e Extent) Intersect(o Extent) Extent {
	lo, hi := max(e.Start, o.Start), min(e.End(), o.End())
	if lo >= hi {
		return Extent{}
	}
	return Extent{lo, hi - lo}
}

// String formats e as "start+len", the notation used in daxstack messages.
func (e Extent) String() string {
	return strconv.FormatUint(e.Start, 10) + "+" + strconv.FormatUint(e.Len, 10)
}

// Run is Count copies of a Len-sector extent, Stride sectors apart: the
// extents [Start + i*Stride, Start + i*Stride + Len) for 0 <= i < Count.
//
// A valid run has Len >= 1 and Count >= 1. A run with Count == 1 is a plain
// extent and has Stride 0; a run with Count >= 2 has Stride > Len (a stride
// equal to the length would be one contiguous extent and is written as one).
type Run struct {
	Start  uint64
	Len    uint64
	Stride uint64
	Count  uint64
}

// ExtentRun returns the run holding the single extent e.
func ExtentRun(e Extent) Run { return Run{Start: e.Start, Len: e.Len, Count: 1} }

// Elem returns the i'th extent of r.
func (r Run) Elem(i uint64) Extent { return Extent{r.Start + i*r.Stride, r.Len} }

// First returns the first extent of r.
func (r Run) First() Extent { return Extent{r.Start, r.Len} }

// Last returns the last extent of r.
func (r Run) Last() Extent { return r.Elem(r.Count - 1) }

// Span returns the smallest extent covering all of r.
func (r Run) Span() Extent {
	return Extent{r.Start, (r.Count-1)*r.Stride + r.Len}
}

// End returns the first sector after the last extent of r.
func (r Run) End() uint64 { return r.Last().End() }

// Sectors returns how many sectors r holds.
func (r Run) Sectors() uint64 { return r.Len * r.Count }

// IsExtent reports whether r is a single plain extent.
func (r Run) IsExtent() bool { return r.Count == 1 }

// Contains reports whether sector s lies in one of r's extents.
func (r Run) Contains(s uint64) bool {
	if s < r.Start || s >= r.End() {
		return false
	}
	if r.Count == 1 {
		return true
	}
	return (s-r.Start)%r.Stride < r.Len
}

// Valid reports whether r satisfies the invariants documented on Run.
func (r Run) Valid() bool {
	if r.Len == 0 || r.Count == 0 || r.Len > MaxSector || r.Start > MaxSector {
		return false
	}
	if r.Count == 1 {
		return r.Stride == 0 && r.Start+r.Len <= MaxSector
	}
	if r.Stride <= r.Len || r.Stride > MaxSector || r.Count > MaxSector/r.Stride {
		return false
	}
	return r.Start+(r.Count-1)*r.Stride+r.Len <= MaxSector
}

// canon rewrites r into its canonical shape: a stride equal to the length
// becomes one contiguous extent, and a single copy drops its stride.
func (r Run) canon() Run {
	if r.Count > 1 && r.Stride == r.Len {
		return Run{Start: r.Start, Len: r.Len * r.Count, Count: 1}
	}
	if r.Count == 1 {
		r.Stride = 0
	}
	return r
}

// String formats r as "start+len" for a plain extent and
// "start+len*count/stride" for a strided run.
func (r Run) String() string {
	if r.Count == 1 {
		return r.First().String()
	}
	return fmt.Sprintf("%d+%d*%d/%d", r.Start, r.Len, r.Count, r.Stride)
}

// floorDiv returns floor(a/b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// elemsTouching returns the index range [first, last] of the extents of r
// that overlap [lo, hi), and ok=false if there are none. r must have
// Count >= 2.
func (r Run) elemsTouching(lo, hi uint64) (first, last uint64, ok bool) {
	if hi <= r.Start || lo >= r.End() || lo >= hi {
		return 0, 0, false
	}
	if lo >= r.Start+r.Len {
		first = (lo-r.Start-r.Len)/r.Stride + 1
	}
	last = min(r.Count-1, (hi-1-r.Start)/r.Stride)
	if first > last {
		return 0, 0, false
	}
	return first, last, true
}

// clip appends to out the parts of r inside [lo, hi), in ascending order.
func (r Run) clip(lo, hi uint64, out []Run) []Run {
	if hi <= lo {
		return out
	}
	whole := Extent{lo, hi - lo}
	if r.Count == 1 {
		if e := r.First().Intersect(whole); e.Len > 0 {
			out = append(out, ExtentRun(e))
		}
		return out
	}
	first, last, ok := r.elemsTouching(lo, hi)
	if !ok {
		return out
	}
	// Elements [midLo, midHi) are kept whole; a cut first or last element
	// becomes a plain extent of its own.
	midLo, midHi := first, last+1
	var head, tail Extent
	if e := r.Elem(first); e.Start < lo || e.End() > hi {
		head = e.Intersect(whole)
		midLo++
	}
	if last >= midLo {
		if e := r.Elem(last); e.Start < lo || e.End() > hi {
			tail = e.Intersect(whole)
			midHi--
		}
	}
	if head.Len > 0 {
		out = append(out, ExtentRun(head))
	}
	if midHi > midLo {
		out = append(out, Run{r.Start + midLo*r.Stride, r.Len, r.Stride, midHi - midLo}.canonCount())
	}
	if tail.Len > 0 {
		out = append(out, ExtentRun(tail))
	}
	return out
}

// canonCount drops the stride of a run reduced to one copy.
func (r Run) canonCount() Run {
	if r.Count == 1 {
		r.Stride = 0
	}
	return r
}

// minus appends to out the parts of r outside [lo, hi).
func (r Run) minus(lo, hi uint64, out []Run) []Run {
	if hi <= lo || hi <= r.Start || lo >= r.End() {
		return append(out, r)
	}
	if r.Count == 1 {
		e := r.First()
		if e.Start < lo {
			out = append(out, ExtentRun(Extent{e.Start, lo - e.Start}))
		}
		if e.End() > hi {
			out = append(out, ExtentRun(Extent{hi, e.End() - hi}))
		}
		return out
	}
	first, last, ok := r.elemsTouching(lo, hi)
	if !ok {
		return append(out, r)
	}
	if first > 0 {
		out = append(out, Run{r.Start, r.Len, r.Stride, first}.canonCount())
	}
	// Element first may keep a head; element last may keep a tail. Elements
	// strictly between them are covered by [lo, hi) because Stride > Len.
	if e := r.Elem(first); e.Start < lo {
		out = append(out, ExtentRun(Extent{e.Start, lo - e.Start}))
	}
	if e := r.Elem(last); e.End() > hi {
		out = append(out, ExtentRun(Extent{hi, e.End() - hi}))
	}
	if last+1 < r.Count {
		out = append(out, Run{r.Start + (last+1)*r.Stride, r.Len, r.Stride, r.Count - last - 1}.canonCount())
	}
	return out
}

// gaps returns the run of holes between r's extents (Count-1 of them), and
// ok=false when r is a plain extent.
func (r Run) gaps() (Run, bool) {
	if r.Count < 2 {
		return Run{}, false
	}
	return Run{r.Start + r.Len, r.Stride - r.Len, r.Stride, r.Count - 1}.canon(), true
}

// intersectRuns appends x ∩ y to out.
func intersectRuns(x, y Run, out []Run) []Run {
	switch {
	case x.Count == 1:
		return y.clip(x.Start, x.End(), out)
	case y.Count == 1:
		return x.clip(y.Start, y.End(), out)
	case x.Stride == y.Stride:
		return intersectSameStride(x, y, out)
	}
	// Different strides: walk the run with fewer extents and clip the other
	// one to each of them. Exact; the cost is the smaller element count.
	if y.Count < x.Count {
		x, y = y, x
	}
	lo, hi := y.Start, y.End()
	first, last, ok := x.elemsTouching(lo, hi)
	if !ok {
		return out
	}
	for i := first; i <= last; i++ {
		e := x.Elem(i)
		out = y.clip(e.Start, e.End(), out)
	}
	return out
}

// intersectSameStride appends x ∩ y for two runs sharing a stride s. The
// extent i of x meets extent i+k of y for at most two values of k, and for a
// fixed k every such meeting has the same shape, so the result is at most two
// runs with stride s.
func intersectSameStride(x, y Run, out []Run) []Run {
	s := int64(x.Stride)
	d0 := int64(y.Start) - int64(x.Start) // offset of y's element j=i+k from x's element i is d0 + k*s
	lx, ly := int64(x.Len), int64(y.Len)
	kMin := floorDiv(-ly-d0, s) + 1
	kMax := -floorDiv(-(lx-d0), s) - 1 // ceil((lx-d0)/s) - 1
	for k := kMin; k <= kMax; k++ {
		d := d0 + k*s
		relLo, relHi := max(0, d), min(lx, d+ly)
		if relLo >= relHi {
			continue
		}
		iLo := max(int64(0), -k)
		iHi := min(int64(x.Count), int64(y.Count)-k)
		if iHi <= iLo {
			continue
		}
		out = append(out, Run{
			Start:  x.Start + uint64(iLo)*x.Stride + uint64(relLo),
			Len:    uint64(relHi - relLo),
			Stride: x.Stride,
			Count:  uint64(iHi - iLo),
		}.canonCount())
	}
	return out
}

// subtractRuns appends x − y to out: x outside y's span, plus x inside the
// holes of y.
func subtractRuns(x, y Run, out []Run) []Run {
	sp := y.Span()
	out = x.minus(sp.Start, sp.End(), out)
	if g, ok := y.gaps(); ok {
		out = intersectRuns(x, g, out)
	}
	return out
}
