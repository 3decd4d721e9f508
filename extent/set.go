package extent

import (
	"cmp"
	"container/heap"
	"iter"
	"slices"
	"strings"
)

// Set is an exact set of sectors, held as disjoint runs sorted by start.
// The zero Set is empty and ready to use. Sets are immutable values.
type Set struct {
	runs []Run
}

// Of returns the set of the given extents, which may overlap or touch.
func Of(exts ...Extent) Set {
	runs := make([]Run, 0, len(exts))
	for _, e := range exts {
		if e.Len > 0 {
			runs = append(runs, ExtentRun(e))
		}
	}
	return fromOverlapping(runs)
}

// FromRuns returns the set of sectors in the given runs, which may overlap.
// Invalid runs (see Run.Valid) are ignored.
func FromRuns(runs ...Run) Set {
	valid := make([]Run, 0, len(runs))
	for _, r := range runs {
		if r.Count > 1 && r.Stride == r.Len {
			r = r.canon()
		}
		if r.Valid() {
			valid = append(valid, r)
		}
	}
	return fromOverlapping(valid)
}

// fromOverlapping builds a set from runs that may overlap each other.
func fromOverlapping(runs []Run) Set {
	if len(runs) == 0 {
		return Set{}
	}
	slices.SortFunc(runs, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
	if spansDisjoint(runs) {
		return Set{normalize(runs)}
	}
	var s Set
	for _, r := range runs {
		s = s.Union(Set{[]Run{r}})
	}
	return s
}

// spansDisjoint reports whether the spans of runs (sorted by start) are
// pairwise disjoint.
func spansDisjoint(runs []Run) bool {
	for i := 1; i < len(runs); i++ {
		if runs[i].Start < runs[i-1].End() {
			return false
		}
	}
	return true
}

// Runs returns the runs of s in start order. The slice is shared with s and
// must not be modified.
func (s Set) Runs() []Run { return s.runs }

// Empty reports whether s holds no sectors.
func (s Set) Empty() bool { return len(s.runs) == 0 }

// Sectors returns how many sectors s holds.
func (s Set) Sectors() uint64 {
	var n uint64
	for _, r := range s.runs {
		n += r.Sectors()
	}
	return n
}

// Bounds returns the smallest extent covering s (empty if s is empty).
func (s Set) Bounds() Extent {
	if len(s.runs) == 0 {
		return Extent{}
	}
	lo, hi := s.runs[0].Start, uint64(0)
	for _, r := range s.runs {
		hi = max(hi, r.End())
	}
	return Extent{lo, hi - lo}
}

// Contains reports whether sector x is in s.
func (s Set) Contains(x uint64) bool {
	// Runs are sorted by start; only runs starting at or before x can hold it.
	n, _ := slices.BinarySearchFunc(s.runs, x+1, func(r Run, t uint64) int { return cmp.Compare(r.Start, t) })
	for _, r := range s.runs[:n] {
		if r.Contains(x) {
			return true
		}
	}
	return false
}

// Overlaps reports whether s and e share a sector.
func (s Set) Overlaps(e Extent) bool {
	if e.Len == 0 {
		return false
	}
	for _, r := range s.runs {
		if r.Start >= e.End() {
			break
		}
		if r.End() <= e.Start {
			continue
		}
		if len(r.clip(e.Start, e.End(), nil)) > 0 {
			return true
		}
	}
	return false
}

// Union returns the sectors in s or o.
func (s Set) Union(o Set) Set {
	switch {
	case len(o.runs) == 0:
		return s
	case len(s.runs) == 0:
		return o
	}
	extra := o.Subtract(s)
	all := make([]Run, 0, len(s.runs)+len(extra.runs))
	all = append(append(all, s.runs...), extra.runs...)
	slices.SortFunc(all, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
	return Set{normalize(all)}
}

// Intersect returns the sectors in both s and o.
func (s Set) Intersect(o Set) Set {
	var out []Run
	idx := newSpanIndex(o.runs)
	for _, x := range s.runs {
		idx.each(x.Span(), func(y Run) { out = intersectRuns(x, y, out) })
	}
	return build(out)
}

// Subtract returns the sectors in s and not in o.
func (s Set) Subtract(o Set) Set {
	if len(o.runs) == 0 || len(s.runs) == 0 {
		return s
	}
	var out []Run
	idx := newSpanIndex(o.runs)
	var cur, next []Run
	for _, x := range s.runs {
		cur = append(cur[:0], x)
		idx.each(x.Span(), func(y Run) {
			next = next[:0]
			for _, p := range cur {
				if p.Start < y.End() && y.Start < p.End() {
					next = subtractRuns(p, y, next)
				} else {
					next = append(next, p)
				}
			}
			cur, next = next, cur
		})
		out = append(out, cur...)
	}
	return build(out)
}

// Clip returns the sectors of s inside [lo, hi).
func (s Set) Clip(lo, hi uint64) Set {
	if hi <= lo || len(s.runs) == 0 {
		return Set{}
	}
	if s.runs[0].Start >= lo && s.Bounds().End() <= hi {
		return s // all inside: sets are immutable, so s itself will do
	}
	var out []Run
	for _, r := range s.runs {
		if r.Start >= hi {
			break
		}
		out = r.clip(lo, hi, out)
	}
	return build(out)
}

// Shift returns s moved by delta sectors. The caller must keep every sector
// within [0, MaxSector]; Clip first when shifting down.
func (s Set) Shift(delta int64) Set {
	if delta == 0 || len(s.runs) == 0 {
		return s
	}
	out := make([]Run, len(s.runs))
	for i, r := range s.runs {
		r.Start = uint64(int64(r.Start) + delta)
		out[i] = r
	}
	return Set{out}
}

// Equal reports whether s and o hold exactly the same sectors, however
// their runs are arranged. Sets with the same runs are equal at once, and
// sets of different sizes unequal; otherwise their coalesced extents are
// compared one by one.
func (s Set) Equal(o Set) bool {
	if slices.Equal(s.runs, o.runs) {
		return true
	}
	if s.Sectors() != o.Sectors() {
		return false
	}
	a, b := newExtentCursor(s.runs), newExtentCursor(o.runs)
	for {
		x, okA := a.next()
		y, okB := b.next()
		if okA != okB || x != y {
			return false
		}
		if !okA {
			return true
		}
	}
}

// String formats s as its runs separated by spaces (see Run.String).
func (s Set) String() string {
	parts := make([]string, len(s.runs))
	for i, r := range s.runs {
		parts[i] = r.String()
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Extents yields the sectors of s as sorted, coalesced plain extents, one
// at a time, in memory proportional to the number of runs.
func (s Set) Extents() iter.Seq[Extent] {
	return func(yield func(Extent) bool) {
		c := newExtentCursor(s.runs)
		for e, ok := c.next(); ok; e, ok = c.next() {
			if !yield(e) {
				return
			}
		}
	}
}

// extentCursor walks the elements of disjoint runs in start order and
// coalesces touching ones. When the runs' spans are disjoint it walks them
// in turn; when spans interleave it merges them with a heap.
type extentCursor struct {
	runs     []Run
	disjoint bool
	ri       int    // disjoint mode: current run
	ei       uint64 // disjoint mode: next element of it
	h        elemHeap
	cur      Extent // the extent being coalesced
	have     bool   // cur holds an element not yet returned
}

func newExtentCursor(runs []Run) *extentCursor {
	c := &extentCursor{runs: runs, disjoint: spansDisjoint(runs)}
	if !c.disjoint {
		c.h = make(elemHeap, 0, len(runs))
		for _, r := range runs {
			c.h = append(c.h, elemCursor{r, 0})
		}
		heap.Init(&c.h)
	}
	return c
}

// elem returns the next element in start order.
func (c *extentCursor) elem() (Extent, bool) {
	if c.disjoint {
		for c.ri < len(c.runs) {
			if r := &c.runs[c.ri]; c.ei < r.Count {
				e := r.Elem(c.ei)
				c.ei++
				return e, true
			}
			c.ri, c.ei = c.ri+1, 0
		}
		return Extent{}, false
	}
	if len(c.h) == 0 {
		return Extent{}, false
	}
	top := &c.h[0]
	e := top.run.Elem(top.i)
	if top.i++; top.i == top.run.Count {
		heap.Pop(&c.h)
	} else {
		heap.Fix(&c.h, 0)
	}
	return e, true
}

// next returns the next coalesced extent.
func (c *extentCursor) next() (Extent, bool) {
	if !c.have {
		e, ok := c.elem()
		if !ok {
			return Extent{}, false
		}
		c.cur, c.have = e, true
	}
	for {
		e, ok := c.elem()
		if !ok {
			c.have = false
			return c.cur, true
		}
		if e.Start == c.cur.End() {
			c.cur.Len += e.Len
			continue
		}
		out := c.cur
		c.cur = e
		return out, true
	}
}

// NumExtents returns how many coalesced extents Extents would yield. It
// walks them, so it costs time proportional to that number.
func (s Set) NumExtents() uint64 {
	var n uint64
	for range s.Extents() {
		n++
	}
	return n
}

type elemCursor struct {
	run Run
	i   uint64
}

type elemHeap []elemCursor

func (h elemHeap) Len() int { return len(h) }
func (h elemHeap) Less(i, j int) bool {
	return h[i].run.Elem(h[i].i).Start < h[j].run.Elem(h[j].i).Start
}
func (h elemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *elemHeap) Push(x any)   { *h = append(*h, x.(elemCursor)) }
func (h *elemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// spanIndex finds the runs (sorted by start) whose spans overlap an extent.
type spanIndex struct {
	runs   []Run
	maxEnd []uint64 // maxEnd[i] = max span end of runs[0..i]
}

func newSpanIndex(runs []Run) spanIndex {
	m := make([]uint64, len(runs))
	var hi uint64
	for i, r := range runs {
		hi = max(hi, r.End())
		m[i] = hi
	}
	return spanIndex{runs, m}
}

func (x spanIndex) each(e Extent, fn func(Run)) {
	// maxEnd is non-decreasing: skip every run that ends at or before e.
	i, _ := slices.BinarySearch(x.maxEnd, e.Start+1)
	for ; i < len(x.runs) && x.runs[i].Start < e.End(); i++ {
		if x.runs[i].End() > e.Start {
			fn(x.runs[i])
		}
	}
}

// build sorts disjoint runs and normalises them into a Set.
func build(runs []Run) Set {
	if len(runs) == 0 {
		return Set{}
	}
	slices.SortFunc(runs, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
	return Set{normalize(runs)}
}

// normalize coalesces disjoint runs sorted by start. Every rewrite it makes
// is a set identity, so the result holds exactly the input's sectors; it
// merges what it can see between neighbours in start order:
//
//   - touching plain extents become one extent;
//   - an extent that continues a run's progression extends the run, and
//     three equal extents evenly spaced become a run;
//   - runs that continue each other, or sit side by side with the same
//     stride and count (neighbouring stripes on one device), become one;
//   - an extent touching the first or last element of a run absorbs it.
func normalize(runs []Run) []Run {
	out := mergePass(runs)
	// Absorbing a run's first element moves the run's start forward, past
	// items that followed it; sort and merge once more when that happened.
	if !sortedByStart(out) {
		slices.SortFunc(out, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
		out = mergePass(out)
		if !sortedByStart(out) {
			slices.SortFunc(out, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
		}
	}
	// A run of two copies prints better as two extents. The second copy may
	// land after runs that interleave, so sort again if any were split.
	split := false
	for i, n := 0, len(out); i < n; i++ {
		if r := out[i]; r.Count == 2 {
			out[i] = ExtentRun(r.First())
			out = append(out, ExtentRun(r.Elem(1)))
			split = true
		}
	}
	if split {
		slices.SortFunc(out, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
	}
	return out
}

// mergePass pushes every run in turn, in place: each push grows the output
// by at most one run, so while run i is pushed the output holds at most i
// runs and only overwrites runs already read. The callers own runs.
func mergePass(runs []Run) []Run {
	out := runs[:0]
	for _, r := range runs {
		out = push(out, r.canon())
	}
	return out
}

func sortedByStart(runs []Run) bool {
	return slices.IsSortedFunc(runs, func(a, b Run) int { return cmp.Compare(a.Start, b.Start) })
}

// push appends r to out, merging with the top of out where a rule applies.
// Every rule is a set identity that holds whatever the order of t and r, so
// a pass over input that is no longer sorted can miss a merge but never
// changes the set.
func push(out []Run, r Run) []Run {
	for {
		n := len(out)
		if n == 0 {
			return append(out, r)
		}
		t := out[n-1]
		switch {
		case t.Count == 1 && r.Count == 1 && r.Start <= t.End() && t.Start <= r.End():
			// Touching extents (or overlapping, which disjoint input never has).
			out = out[:n-1]
			lo := min(t.Start, r.Start)
			r = ExtentRun(Extent{lo, max(t.End(), r.End()) - lo})
			continue
		case t.Count > 1 && r.Count == 1 && r.Len == t.Len && r.Start == t.Start+t.Count*t.Stride:
			out[n-1].Count++
			return out
		case t.Count > 1 && r.Count == 1 && r.Start == t.End():
			// r touches t's last element: take that element off t.
			last := t.Last()
			t.Count--
			out[n-1] = t.canonCount()
			r = ExtentRun(Extent{last.Start, last.Len + r.Len})
			if t.Count == 0 {
				out = out[:n-1]
			}
			// The shortened t may now be an extent that r touches.
			continue
		case t.Count == 1 && r.Count > 1 && t.End() == r.Start:
			// t touches r's first element.
			out = out[:n-1]
			rest := Run{r.Start + r.Stride, r.Len, r.Stride, r.Count - 1}.canonCount()
			out = push(out, ExtentRun(Extent{t.Start, t.Len + r.Len}))
			r = rest
			continue
		case t.Count == 1 && r.Count > 1 && t.Len == r.Len && r.Start > t.Start && r.Start-t.Start == r.Stride:
			out = out[:n-1]
			r = Run{t.Start, r.Len, r.Stride, r.Count + 1}
			continue
		case t.Count > 1 && r.Count > 1 && t.Stride == r.Stride && t.Len == r.Len && r.Start == t.Start+t.Count*t.Stride:
			out[n-1].Count += r.Count
			return out
		case t.Count > 1 && r.Count > 1 && t.Stride == r.Stride && t.Count == r.Count && r.Start == t.Start+t.Len:
			out = out[:n-1]
			r = Run{t.Start, t.Len + r.Len, t.Stride, t.Count}.canon()
			continue
		case t.Count == 1 && r.Count == 1 && n >= 2 && out[n-2].Count == 1 &&
			out[n-2].Len == t.Len && r.Len == t.Len &&
			out[n-2].Start < t.Start && t.Start < r.Start &&
			t.Start-out[n-2].Start == r.Start-t.Start:
			// Three equal extents evenly spaced: a run.
			p := out[n-2]
			out = out[:n-2]
			r = Run{p.Start, p.Len, t.Start - p.Start, 3}
			continue
		}
		return append(out, r)
	}
}

// Disjoint returns the set of the given runs, which the caller guarantees
// share no sector (rmap results are: a mapping sends each sector to one
// place, so the images of disjoint pieces are disjoint). It skips the
// overlap handling of FromRuns and only sorts and coalesces. Invalid runs
// are ignored.
func Disjoint(runs ...Run) Set {
	valid := make([]Run, 0, len(runs))
	for _, r := range runs {
		if r.Count > 1 && r.Stride == r.Len {
			r = r.canon()
		}
		if r.Valid() {
			valid = append(valid, r)
		}
	}
	return build(valid)
}
