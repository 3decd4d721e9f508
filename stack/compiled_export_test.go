package stack

// Exported to the external tests: the alternative lookups the compiled
// map's layout was chosen against (see BenchmarkCompiledLayouts).

import (
	"math/bits"
	"sort"
)

// LayoutFinder finds the piece of a compiled map holding a sector by one
// of the alternative layouts, and returns the sector's translation (the
// piece's base added), so that every variant reads the piece.
type LayoutFinder struct {
	Name string
	Find func(s uint64) uint64
}

// CompiledLayouts returns the alternatives for c.
func CompiledLayouts(c *Compiled) []LayoutFinder {
	pcs := c.pcs
	ends := make([]uint64, len(pcs))
	highs := make([]uint64, len(pcs))
	for i := range pcs {
		ends[i] = pcs[i].end
		highs[i] = pcs[i].end - 1
	}
	ix := newIndex(highs)
	out := []LayoutFinder{
		{"in-use", func(s uint64) uint64 { return c.Lookup(s).Sector }},
		{"sort.Search", func(s uint64) uint64 {
			i := sort.Search(len(ends), func(i int) bool { return ends[i] > s })
			return s + pcs[i].base
		}},
		{"branchless-bsearch", func(s uint64) uint64 {
			base, n := 0, len(ends)
			for n > 1 {
				half := n / 2
				if ends[base+half-1] <= s {
					base += half
				}
				n -= half
			}
			return s + pcs[base].base
		}},
		{"kernel-btree", func(s uint64) uint64 { i := ix.find(s); return s + pcs[i].base }},
	}
	for _, d := range []int{-1, 0, 1, 2, 3, 4, 5, 6, 7} {
		shift, nb, bkt := altBuckets(c, d)
		name := "buckets(avg/" + itoa(1<<max(0, -d)) + ")"
		if d >= 0 {
			name = "buckets(avg*" + itoa(1<<d) + ")"
		}
		scan := max(8, 1<<(d+1))
		out = append(out, LayoutFinder{name, func(s uint64) uint64 {
			b := min(s>>shift, nb)
			i, j := int(bkt[b]), int(bkt[b+1])
			if j-i <= scan {
				for pcs[i].end <= s {
					i++
				}
			} else {
				for i < j {
					m := int(uint(i+j) >> 1)
					if pcs[m].end <= s {
						i = m + 1
					} else {
						j = m
					}
				}
			}
			return s + pcs[i].base
		}})
	}
	// Coarse buckets searched by halves, not scanned.
	for _, d := range []int{3, 5, 7} {
		shift, nb, bkt := altBuckets(c, d)
		out = append(out, LayoutFinder{"buckets(avg*" + itoa(1<<d) + ")/bsearch", func(s uint64) uint64 {
			b := min(s>>shift, nb)
			i, j := int(bkt[b]), int(bkt[b+1])
			for i < j {
				m := int(uint(i+j) >> 1)
				if pcs[m].end <= s {
					i = m + 1
				} else {
					j = m
				}
			}
			return s + pcs[i].base
		}})
	}
	// Ends apart from the rest of the pieces (scan 8 to a line, then read
	// the piece).
	for _, d := range []int{0, 3} {
		shift, nb, bkt := altBuckets(c, d)
		out = append(out, LayoutFinder{"buckets(avg*" + itoa(1<<d) + ")+ends-apart", func(s uint64) uint64 {
			b := min(s>>shift, nb)
			i := int(bkt[b])
			for ends[i] <= s {
				i++
			}
			return s + pcs[i].base
		}})
	}
	return out
}

// altBuckets builds a bucket index of buckets as wide as 2^d average
// pieces.
func altBuckets(c *Compiled, d int) (uint, uint64, []uint32) {
	if c.size == 0 {
		return 63, 0, []uint32{0, 0}
	}
	avg := max(c.size/uint64(len(c.pcs)-1), 1)
	shift := uint(max(0, bits.Len64(avg)-1+d))
	nb := (c.size-1)>>shift + 1
	bkt := make([]uint32, nb+2)
	i := 0
	for b := uint64(0); b < nb; b++ {
		for s := b << shift; c.pcs[i].end <= s; {
			i++
		}
		bkt[b] = uint32(i)
	}
	bkt[nb], bkt[nb+1] = uint32(len(c.pcs)-1), uint32(len(c.pcs)-1)
	return shift, nb, bkt
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// SetBucketPieces sets log2 of the bucket width in average pieces for the
// maps compiled from now on, and returns the previous value.
func SetBucketPieces(n uint) uint {
	old := bucketPieces
	bucketPieces = n
	return old
}
