package nbdtest

import (
	"slices"
	"sync"

	"github.com/daxstack/daxstack/nbd"
)

// BadRanges is a set of bad byte ranges, safe for concurrent use.
type BadRanges struct {
	mu sync.Mutex
	r  []span // sorted, disjoint, not adjacent
}

type span struct{ off, end int64 }

// Add marks [off, off+length) bad.
func (b *BadRanges) Add(off, length int64) {
	if length <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := span{off, off + length}
	var out []span
	for _, r := range b.r {
		if r.end < s.off || r.off > s.end {
			out = append(out, r)
			continue
		}
		s.off, s.end = min(s.off, r.off), max(s.end, r.end)
	}
	out = append(out, s)
	slices.SortFunc(out, func(a, b span) int { return int(a.off - b.off) })
	b.r = out
}

// Clear removes [off, off+length) from the set.
func (b *BadRanges) Clear(off, length int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	end := off + length
	var out []span
	for _, r := range b.r {
		if r.end <= off || r.off >= end {
			out = append(out, r)
			continue
		}
		if r.off < off {
			out = append(out, span{r.off, off})
		}
		if r.end > end {
			out = append(out, span{end, r.end})
		}
	}
	b.r = out
}

// First returns the first bad byte in [off, off+length).
func (b *BadRanges) First(off, length int64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.r {
		if r.end > off && r.off < off+length {
			return max(r.off, off), true
		}
	}
	return 0, false
}

// Extents appends the bad ranges meeting [off, off+length) to ext, with
// flag 1.
func (b *BadRanges) Extents(off, length int64, ext []nbd.Extent) []nbd.Extent {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.r {
		if r.end > off && r.off < off+length {
			ext = append(ext, nbd.Extent{Offset: r.off, Length: r.end - r.off, Flags: 1})
		}
	}
	return ext
}

// List returns the ranges as (offset, length) pairs.
func (b *BadRanges) List() [][2]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][2]int64
	for _, r := range b.r {
		out = append(out, [2]int64{r.off, r.end - r.off})
	}
	return out
}
