package rmapchain

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// Reverse is a compiled reverse index of one Graph: for every leaf, and
// for every mapped device above it, the pieces of the device's compiled map
// (stack.Compiled) that land on the leaf, sorted by leaf sector. Carrying a
// few bad sectors of a leaf up is then one search per device above the
// leaf, instead of an Rmap per segment and a set built at every level.
//
// It answers what Propagate answers, exactly and in the same form, for
// the common question: a few sectors of one leaf, to every device above it.
// Anything else (several sources, a mapped device as source, large sets,
// sectors past the leaf's end, a filter, or a leaf under a target the
// compiled maps do not flatten) goes to Propagate.
type Reverse struct {
	g      *stack.Graph
	leaves map[*stack.Dev]*leafRev
}

type leafRev struct {
	exact bool      // every device above the leaf is indexed exactly
	devs  []*devRev // the devices with pieces on the leaf
}

// devRev is one device's pieces on one leaf.
type devRev struct {
	dev     *stack.Dev
	ents    []rent       // sorted by lo
	stripes []stripeRent // the stripe entries' details
	ends    []uint64     // each entry's hi, ascending, when the entries do not overlap
	top     []uint64     // else the running maximum of hi

	// When the entries do not overlap: bucket b holds the first entry
	// ending after leaf sector base + b<<shift, as in stack.Compiled.
	base  uint64
	shift uint
	bkt   []uint32
}

// rent is a leaf run of a device's map, or one stripe of a stripe piece:
// leaf sectors [lo, hi) at most. A leaf run's leaf sector x is device
// sector x - lo + start.
type rent struct {
	lo, hi uint64
	start  uint64
	stripe uint32 // 0: a leaf run; else 1 + the index of its stripeRent
}

// stripeRent is one stripe of a stripe piece [start, end) of the device:
// leaf sector x is row (x-lo0)/chunk, offset (x-lo0)%chunk of stripe i of
// k, whose row 0 starts at leaf sector lo0; the segment offset of row r,
// stripe i, is (r*k+i)*chunk, and the device sector of segment offset rel
// is rel - offset + start.
type stripeRent struct {
	start, end  uint64
	chunk, k, i uint64
	lo0, offset uint64
}

// Fast-path limits: larger sets go to Propagate, which keeps strided
// runs strided however large.
const (
	maxFastRuns    = 8
	maxFastSectors = 1 << 12
)

// NewReverse compiles the maps of g's devices and builds the reverse
// index of every leaf.
func NewReverse(g *stack.Graph) *Reverse {
	maps := g.Compile()
	r := &Reverse{g: g, leaves: map[*stack.Dev]*leafRev{}}
	exact := map[*stack.Dev]bool{}
	for _, md := range g.Devices() {
		d := md.Dev()
		exact[d] = true
		per := map[*stack.Dev]*devRev{}
		on := func(leaf *stack.Dev) *devRev {
			dr := per[leaf]
			if dr == nil {
				dr = &devRev{dev: d}
				per[leaf] = dr
			}
			return dr
		}
		for pc := range maps[md].Pieces() {
			switch pc.Kind {
			case stack.PieceLeaf:
				dr := on(pc.Leaf)
				dr.ents = append(dr.ents, rent{lo: pc.Sector, hi: pc.Sector + (pc.End - pc.Start), start: pc.Start})
			case stack.PieceStripe:
				k := uint64(len(pc.Stripes))
				first, last := pc.Offset/pc.Chunk, (pc.Offset+pc.End-pc.Start-1)/pc.Chunk
				for i, st := range pc.Stripes {
					switch st.Kind {
					case stack.PieceZero:
						continue
					case stack.PieceLeaf:
					default:
						exact[d] = false
						continue
					}
					// The chunks of stripe i in [first, last].
					cf := first + (uint64(i)+k-first%k)%k
					if cf > last {
						continue
					}
					cl := last - (last%k+k-uint64(i))%k
					dr := on(st.Leaf)
					dr.stripes = append(dr.stripes, stripeRent{
						start: pc.Start, end: pc.End,
						chunk: pc.Chunk, k: k, i: uint64(i), lo0: st.Sector, offset: pc.Offset,
					})
					dr.ents = append(dr.ents, rent{lo: st.Sector + cf/k*pc.Chunk, hi: st.Sector + (cl/k+1)*pc.Chunk, stripe: uint32(len(dr.stripes))})
				}
			case stack.PieceAsk:
				exact[d] = false
			}
		}
		for leaf, dr := range per {
			lr := r.leaves[leaf]
			if lr == nil {
				lr = &leafRev{}
				r.leaves[leaf] = lr
			}
			dr.index()
			lr.devs = append(lr.devs, dr)
		}
	}
	for _, l := range g.Leaves() {
		lr := r.leaves[l]
		if lr == nil {
			lr = &leafRev{}
			r.leaves[l] = lr
		}
		lr.exact = true
		for _, a := range g.Ancestors(l) {
			if !exact[a.Dev()] {
				lr.exact = false
			}
		}
	}
	return r
}

// index sorts the entries and builds the search over them.
func (dr *devRev) index() {
	ents := dr.ents
	if !slices.IsSortedFunc(ents, func(a, b rent) int { return cmp.Compare(a.lo, b.lo) }) {
		slices.SortFunc(ents, func(a, b rent) int { return cmp.Compare(a.lo, b.lo) })
	}
	disjoint := true
	for i := 1; i < len(ents); i++ {
		if ents[i].lo < ents[i-1].hi {
			disjoint = false
			break
		}
	}
	if disjoint {
		dr.ends = make([]uint64, len(ents))
		for i := range ents {
			dr.ends[i] = ents[i].hi
		}
		dr.buckets()
	} else {
		dr.top = make([]uint64, len(ents))
		var m uint64
		for i := range ents {
			m = max(m, ents[i].hi)
			dr.top[i] = m
		}
	}
}

// buckets builds the bucket index over disjoint entries: buckets 8 to 16
// average entries wide, so that a search reads a small array that stays
// in cache and then a few consecutive entries.
func (dr *devRev) buckets() {
	ents := dr.ents
	dr.base = ents[0].lo
	span := ents[len(ents)-1].hi - dr.base
	avg := max(span/uint64(len(ents)), 1)
	dr.shift = min(uint(bits.Len64(avg)-1)+4, 63)
	nb := (span-1)>>dr.shift + 1
	dr.bkt = make([]uint32, nb+1)
	i := 0
	for b := uint64(0); b <= nb; b++ {
		for x := dr.base + b<<dr.shift; i < len(ents) && ents[i].hi <= x; {
			i++
		}
		dr.bkt[b] = uint32(i)
	}
}

// first returns the index of the first (disjoint) entry ending after lo.
func (dr *devRev) first(lo uint64) int {
	if lo < dr.base {
		return 0
	}
	b := min((lo-dr.base)>>dr.shift, uint64(len(dr.bkt)-1))
	i := int(dr.bkt[b])
	j := len(dr.ends)
	if b+1 < uint64(len(dr.bkt)) {
		j = min(int(dr.bkt[b+1])+1, j)
	}
	if j-i <= 32 {
		for i < len(dr.ends) && dr.ends[i] <= lo {
			i++
		}
		return i
	}
	for i < j {
		m := int(uint(i+j) >> 1)
		if dr.ends[m] <= lo {
			i = m + 1
		} else {
			j = m
		}
	}
	return i
}

// Propagate is Propagate(r's graph, sources, within), answered from the
// index when it can (see Reverse).
func (r *Reverse) Propagate(sources map[*stack.Dev]extent.Set, within func(*stack.Dev) bool) map[*stack.Dev]extent.Set {
	if within == nil && len(sources) == 1 {
		for leaf, set := range sources {
			if out, ok := r.fast(leaf, set); ok {
				return out
			}
		}
	}
	return Propagate(r.g, sources, within)
}

// fast answers for sectors set of leaf, or reports false.
func (r *Reverse) fast(leaf *stack.Dev, set extent.Set) (map[*stack.Dev]extent.Set, bool) {
	return r.answer(leaf, set, false)
}

// answer answers for sectors set of leaf from the index, or reports false;
// with stripes false, also when a stripe entry contributes.
func (r *Reverse) answer(leaf *stack.Dev, set extent.Set, stripes bool) (map[*stack.Dev]extent.Set, bool) {
	lr := r.leaves[leaf]
	if lr == nil || !lr.exact || !leaf.IsLeaf() {
		return nil, false
	}
	runs := set.Runs()
	if len(runs) == 0 || len(runs) > maxFastRuns || set.Sectors() > maxFastSectors {
		return nil, false
	}
	for _, x := range runs {
		if x.Count != 1 {
			return nil, false
		}
	}
	if runs[len(runs)-1].End() > leaf.Size() {
		return nil, false // past the end: parents' sectors there fail, Propagate says which
	}
	out := make(map[*stack.Dev]extent.Set, len(lr.devs)+1)
	out[leaf] = set
	buf := runBufs.Get().(*[]extent.Run)
	for _, dr := range lr.devs {
		acc := (*buf)[:0]
		striped := false
		for _, x := range runs {
			acc, striped = dr.collect(x.Start, x.End(), acc, striped)
		}
		*buf = acc
		if striped && !stripes {
			// Exact, but Propagate may arrange the same sectors in other
			// runs (it normalises level by level): let it answer, so that
			// events and reports print what they always printed.
			runBufs.Put(buf)
			return nil, false
		}
		if len(acc) > 0 {
			out[dr.dev] = extent.Disjoint(acc...)
		}
	}
	runBufs.Put(buf)
	return out, true
}

var runBufs = sync.Pool{New: func() any { b := make([]extent.Run, 0, 16); return &b }}

// collect appends the device runs of leaf sectors [lo, hi); striped
// becomes true when a stripe entry gave some.
func (dr *devRev) collect(lo, hi uint64, out []extent.Run, striped bool) ([]extent.Run, bool) {
	ents := dr.ents
	if dr.ends != nil {
		for i := dr.first(lo); i < len(ents) && ents[i].lo < hi; i++ {
			n := len(out)
			out = dr.collectEnt(&ents[i], lo, hi, out)
			striped = striped || (ents[i].stripe > 0 && len(out) > n)
		}
		return out, striped
	}
	// Overlapping entries: every entry starting before hi whose running
	// maximum reaches past lo may overlap.
	j, k := 0, len(ents)
	for j < k { // the first entry starting at or after hi
		m := int(uint(j+k) >> 1)
		if ents[m].lo < hi {
			j = m + 1
		} else {
			k = m
		}
	}
	first := len(out)
	for i := j - 1; i >= 0 && dr.top[i] > lo; i-- {
		if ents[i].hi > lo {
			n := len(out)
			out = dr.collectEnt(&ents[i], lo, hi, out)
			striped = striped || (ents[i].stripe > 0 && len(out) > n)
		}
	}
	slices.Reverse(out[first:])
	return out, striped
}

// collectEnt appends the device runs of leaf sectors [lo, hi) in en.
func (dr *devRev) collectEnt(en *rent, lo, hi uint64, out []extent.Run) []extent.Run {
	lo, hi = max(lo, en.lo), min(hi, en.hi)
	if lo >= hi {
		return out
	}
	if en.stripe == 0 {
		return append(out, extent.ExtentRun(extent.Extent{Start: lo - en.lo + en.start, Len: hi - lo}))
	}
	e := &dr.stripes[en.stripe-1]
	// A stripe: chunk by chunk of the stripe, each a piece of one chunk
	// of the segment, clipped to the piece.
	for y := lo - e.lo0; y < hi-e.lo0; {
		row, off := y/e.chunk, y%e.chunk
		n := min(e.chunk-off, hi-e.lo0-y)
		rel := (row*e.k+e.i)*e.chunk + off
		// Device sectors [rel, rel+n) - offset + start, inside the piece.
		a, b := max(rel, e.offset), min(rel+n, e.offset+(e.end-e.start))
		if a < b {
			out = append(out, extent.ExtentRun(extent.Extent{Start: a - e.offset + e.start, Len: b - a}))
		}
		y += n
	}
	return out
}

// reverseCache keeps the index of the graph last asked for: Pool.Graph
// returns the same snapshot until a table or the device set changes.
var reverseCache struct {
	mu sync.Mutex
	g  *stack.Graph
	r  *Reverse
}

// ReverseOf returns the reverse index of g, building it on the first call
// for g (the index of the graph before is dropped).
func ReverseOf(g *stack.Graph) *Reverse {
	c := &reverseCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.g != g {
		c.g, c.r = g, NewReverse(g)
	}
	return c.r
}
