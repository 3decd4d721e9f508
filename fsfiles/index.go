package fsfiles

import (
	"cmp"
	"slices"
)

// Flags of an indexed extent.
const (
	xDir       uint8 = 1 << iota // a directory's blocks
	xUnwritten                   // preallocated, reads as zeros
	xShared                      // shared with another file (reflink)
	xXattr                       // extended attribute blocks
	xTree                        // extent-tree blocks
)

// mapped is one extent of an inode on the device: sectors [Start,
// Start+Len) hold the inode's bytes from Logical on.
type mapped struct {
	Start, Len uint64 // 512-byte sectors of the device
	Logical    uint64 // byte offset in the file (or directory)
	Ino        uint64
	Flags      uint8
}

func (m mapped) end() uint64 { return m.Start + m.Len }

// extentIndex answers "which inodes have blocks in these sectors": a base
// of extents sorted by start (from a walk) with, for every inode mapped
// again since, its current extents in an overlay that hides its extents in
// the base. Overlapping extents are allowed (reflinked files share blocks).
// It is not safe for concurrent use.
type extentIndex struct {
	base   []mapped
	maxEnd []uint64 // maxEnd[i] = max end of base[0..i]

	over     map[uint64][]mapped // inode -> its extents now (empty: it has none)
	overList []mapped            // the overlay's extents sorted by start, rebuilt when stale
	overMax  []uint64
	stale    bool
}

// newExtentIndex builds the index of exts (in any order).
func newExtentIndex(exts []mapped) *extentIndex {
	x := &extentIndex{over: map[uint64][]mapped{}}
	x.setBase(exts)
	return x
}

func sortMapped(m []mapped) {
	slices.SortFunc(m, func(a, b mapped) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.Ino, b.Ino)
	})
}

func prefixMax(m []mapped) []uint64 {
	out := make([]uint64, len(m))
	var hi uint64
	for i, e := range m {
		hi = max(hi, e.end())
		out[i] = hi
	}
	return out
}

func (x *extentIndex) setBase(exts []mapped) {
	sortMapped(exts)
	x.base, x.maxEnd = exts, prefixMax(exts)
}

// replace makes exts the extents of ino (none: the inode has no blocks, or
// is gone).
func (x *extentIndex) replace(ino uint64, exts []mapped) {
	x.over[ino] = exts
	x.stale = true
	if len(x.over) > 4096 && len(x.over) > len(x.base)/8 {
		x.compact()
	}
}

// compact folds the overlay into the base.
func (x *extentIndex) compact() {
	out := make([]mapped, 0, len(x.base))
	for _, e := range x.base {
		if _, ok := x.over[e.Ino]; !ok {
			out = append(out, e)
		}
	}
	for _, exts := range x.over {
		out = append(out, exts...)
	}
	x.setBase(out)
	x.over = map[uint64][]mapped{}
	x.overList, x.overMax, x.stale = nil, nil, false
}

// each calls fn for every current extent overlapping sectors [lo, hi), in
// no particular order.
func (x *extentIndex) each(lo, hi uint64, fn func(mapped)) {
	if hi <= lo {
		return
	}
	if x.stale {
		x.overList = x.overList[:0]
		for _, exts := range x.over {
			x.overList = append(x.overList, exts...)
		}
		sortMapped(x.overList)
		x.overMax = prefixMax(x.overList)
		x.stale = false
	}
	scan(x.base, x.maxEnd, lo, hi, func(e mapped) {
		if _, hidden := x.over[e.Ino]; !hidden {
			fn(e)
		}
	})
	scan(x.overList, x.overMax, lo, hi, fn)
}

// scan calls fn for the extents of m (sorted by start, with its prefix
// maxima) that overlap [lo, hi).
func scan(m []mapped, maxEnd []uint64, lo, hi uint64, fn func(mapped)) {
	i, _ := slices.BinarySearch(maxEnd, lo+1) // first i whose prefix max end > lo
	for ; i < len(m) && m[i].Start < hi; i++ {
		if m[i].end() > lo {
			fn(m[i])
		}
	}
}

// inodeExtents returns the current extents of ino.
func (x *extentIndex) inodeExtents(ino uint64) []mapped {
	if exts, ok := x.over[ino]; ok {
		return exts
	}
	var out []mapped
	for _, e := range x.base {
		if e.Ino == ino {
			out = append(out, e)
		}
	}
	return out
}

// size returns how many current extents the index holds.
func (x *extentIndex) size() int {
	n := 0
	for _, e := range x.base {
		if _, hidden := x.over[e.Ino]; !hidden {
			n++
		}
	}
	for _, e := range x.over {
		n += len(e)
	}
	return n
}
