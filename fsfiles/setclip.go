package fsfiles

import (
	"cmp"
	"slices"

	"github.com/daxstack/daxstack/extent"
)

// setIndex finds the runs of a set that meet a range of sectors without
// walking the whole set: the runs sorted by start with their prefix
// maximum ends.
type setIndex struct {
	runs   []extent.Run
	maxEnd []uint64
}

func newSetIndex(s extent.Set) setIndex {
	runs := s.Runs()
	m := make([]uint64, len(runs))
	var hi uint64
	for i, r := range runs {
		hi = max(hi, r.End())
		m[i] = hi
	}
	return setIndex{runs, m}
}

// clip appends to out the sectors of the set inside [lo, hi), as runs.
func (x setIndex) clip(lo, hi uint64, out []extent.Run) []extent.Run {
	if hi <= lo {
		return out
	}
	i, _ := slices.BinarySearch(x.maxEnd, lo+1)
	for ; i < len(x.runs) && x.runs[i].Start < hi; i++ {
		if x.runs[i].End() > lo {
			out = clipRun(x.runs[i], lo, hi, out)
		}
	}
	return out
}

// clipRun appends to out the sectors of run r inside [lo, hi): the
// elements wholly inside as one run, a cut first or last element as a
// plain extent of its own.
func clipRun(r extent.Run, lo, hi uint64, out []extent.Run) []extent.Run {
	if hi <= lo || hi <= r.Start || lo >= r.End() {
		return out
	}
	win := extent.Extent{Start: lo, Len: hi - lo}
	if r.Count <= 1 {
		if e := r.First().Intersect(win); e.Len > 0 {
			out = append(out, extent.ExtentRun(e))
		}
		return out
	}
	var first uint64
	if lo >= r.Start+r.Len {
		first = (lo-r.Start-r.Len)/r.Stride + 1
	}
	last := min(r.Count-1, (hi-1-r.Start)/r.Stride)
	if first > last {
		return out
	}
	midLo, midHi := first, last+1
	if e := r.Elem(first); e.Start < lo || e.End() > hi {
		if c := e.Intersect(win); c.Len > 0 {
			out = append(out, extent.ExtentRun(c))
		}
		midLo++
	}
	var tail extent.Extent
	if last >= midLo {
		if e := r.Elem(last); e.Start < lo || e.End() > hi {
			tail = e.Intersect(win)
			midHi--
		}
	}
	if midHi > midLo {
		m := extent.Run{Start: r.Start + midLo*r.Stride, Len: r.Len, Stride: r.Stride, Count: midHi - midLo}
		if m.Count == 1 {
			m.Stride = 0
		}
		out = append(out, m)
	}
	if tail.Len > 0 {
		out = append(out, extent.ExtentRun(tail))
	}
	return out
}

// interval is a half-open range of sectors.
type interval struct{ lo, hi uint64 }

// unionSet returns the set of sectors in any of the intervals (which may
// overlap), merging them first so that extent.Of gets disjoint extents.
func unionSet(iv []interval) extent.Set {
	if len(iv) == 0 {
		return extent.Set{}
	}
	slices.SortFunc(iv, func(a, b interval) int { return cmp.Compare(a.lo, b.lo) })
	exts := make([]extent.Extent, 0, len(iv))
	cur := iv[0]
	for _, v := range iv[1:] {
		if v.lo <= cur.hi {
			cur.hi = max(cur.hi, v.hi)
			continue
		}
		exts = append(exts, extent.Extent{Start: cur.lo, Len: cur.hi - cur.lo})
		cur = v
	}
	exts = append(exts, extent.Extent{Start: cur.lo, Len: cur.hi - cur.lo})
	return extent.Of(exts...)
}

// spans returns the merged spans of a set's runs: the ranges to query.
func spans(s extent.Set) []interval {
	var iv []interval
	for _, r := range s.Runs() {
		sp := r.Span()
		iv = append(iv, interval{sp.Start, sp.End()})
	}
	if len(iv) == 0 {
		return nil
	}
	slices.SortFunc(iv, func(a, b interval) int { return cmp.Compare(a.lo, b.lo) })
	out := iv[:1]
	for _, v := range iv[1:] {
		if t := &out[len(out)-1]; v.lo <= t.hi {
			t.hi = max(t.hi, v.hi)
			continue
		}
		out = append(out, v)
	}
	return out
}
