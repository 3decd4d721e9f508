package stack

import (
	"math/bits"
	"slices"
	"unsafe"
)

// Compile builds the compiled map of d from its active table and the
// active tables of every device below it, compiling each device below
// once. It is for callers that keep no maps (tests, one-off walks);
// CompiledMaps keeps them and rebuilds only what a table swap changes.
//
// The tables must not change while it runs: call it under the lock that
// serialises table swaps, or when none can happen.
func Compile(d *Device) *Compiled {
	built := map[*Device]*Compiled{}
	var get func(md *Device) *Compiled
	get = func(md *Device) *Compiled {
		if c, ok := built[md]; ok {
			return c
		}
		built[md] = nil // a cycle (refused at load) gets no map, and so a step
		t := md.active.Load()
		for _, ch := range t.children() {
			if ch.md != nil {
				get(ch.md)
			}
		}
		c := compile(md, t, func(k *Device) *Compiled { return built[k] })
		built[md] = c
		return c
	}
	return get(d)
}

// maxEnumRuns is how many runs of a target that is neither one run per
// segment nor a Striper the build asks Map for before it makes the rest of
// the segment a step.
const maxEnumRuns = 64

// maxPieces bounds a map's pieces (indexes are 32 bits); a map that would
// need more is one step at its device (exact, and as slow as no map).
const maxPieces = 1 << 31

// cbuild is the state of one map's build.
type cbuild struct {
	c   *Compiled
	kid func(*Device) *Compiled

	leafIx  map[*Dev]uint32
	mapIx   map[*Compiled]uint32
	patIx   map[*stripePat]uint32
	chainIx map[chainKey]uint32
	own     []*stripePat // patterns built here (the others are shared from below)
	full    bool         // too many pieces or refs: the map becomes one step
}

func newBuild(c *Compiled, kid func(*Device) *Compiled) *cbuild {
	return &cbuild{
		c: c, kid: kid,
		leafIx: map[*Dev]uint32{}, mapIx: map[*Compiled]uint32{},
		patIx: map[*stripePat]uint32{}, chainIx: map[chainKey]uint32{},
	}
}

// cspan is a piece being built: it covers [start, end). The pieces of a
// map are added in order, each starting where the previous one ended.
type cspan struct {
	start, end uint64
	base       uint64
	ref        uint32
	chain      uint32
}

// chainKey names a hook chain of the map being built: the level's own hook
// (if any) followed by chain id of a map below (if any).
type chainKey struct {
	seg   *Segment
	delta uint64
	below *Compiled
	id    uint32
}

// compile builds the map of d for table t (nil: no table). kid returns the
// compiled map of each mapped child of t, built from the child's active
// table.
func compile(d *Device, t *Table, kid func(*Device) *Compiled) *Compiled {
	c := &Compiled{dev: d, table: t, size: t.Size(), chains: [][]Hook{nil}}
	b := newBuild(c, kid)
	for _, ch := range t.children() {
		if ch.md != nil {
			c.kids = append(c.kids, childMap{dev: ch.md, m: kid(ch.md)})
		}
	}
	if len(c.kids) > 8 {
		c.kidIx = make(map[*Dev]*Compiled, len(c.kids))
		for _, k := range c.kids {
			c.kidIx[&k.dev.dev] = k.m
		}
	}
	if t != nil {
		c.pcs = make([]cpiece, 0, len(t.segs)+1)
		for i := range t.segs {
			b.segment(&t.segs[i])
			if b.full {
				break
			}
		}
	}
	if b.full {
		*c = Compiled{dev: d, table: t, size: t.Size(), chains: [][]Hook{nil}, kids: c.kids, kidIx: c.kidIx}
		b = newBuild(c, kid)
		b.ask(0, c.size)
	}
	c.pcs = append(c.pcs, cpiece{end: maxSector, ref: kStep<<refShift | b.mapRef(c)})
	b.layout()
	return c
}

// segment adds the pieces of one segment.
func (b *cbuild) segment(seg *Segment) {
	tg := seg.Target
	if seg.io&ioBio != 0 { // run-time behaviour: its requests go one Bio at a time
		b.ask(seg.Begin, seg.End())
		return
	}
	var own *Hook
	if seg.io&ioErrEnd != 0 {
		own = &Hook{Device: b.c.dev, Segment: seg, Target: tg.(EndIOer)}
	}
	if st, ok := tg.(Striper); ok && b.stripe(seg, st, own) {
		return
	}
	for off, n := uint64(0), 0; off < seg.Len; n++ {
		at := seg.Begin + off
		if n == maxEnumRuns {
			b.ask(at, seg.End())
			return
		}
		m, err := tg.Map(off)
		r := min(max(m.Run, 1), seg.Len-off)
		switch {
		case err != nil:
			b.step(at, at+r)
		case m.Dev == nil:
			b.add(cspan{start: at, end: at + r, ref: kZero << refShift, chain: b.chain(own, 0, nil, 0)})
		default:
			b.run(at, m.Dev, m.Sector, r, own)
		}
		off += r
	}
}

// step adds sectors [start, end) of the device, which hold no data of a
// child (they fail), as a step at the device.
func (b *cbuild) step(start, end uint64) {
	b.add(cspan{start: start, end: end, ref: kStep<<refShift | b.mapRef(b.c)})
}

// ask adds sectors [start, end) of the device, whose data the map does
// not place, as a step at the device.
func (b *cbuild) ask(start, end uint64) {
	b.add(cspan{start: start, end: end, ref: kAsk<<refShift | b.mapRef(b.c)})
}

// run adds sectors [at, at+r) of the device, which are sectors
// [cs, cs+r) of dev, composing them with dev's map when dev is mapped.
func (b *cbuild) run(at uint64, dev *Dev, cs, r uint64, own *Hook) {
	if dev.leaf != nil {
		var in uint64
		if size := dev.leaf.Size(); cs < size {
			in = min(r, size-cs)
		}
		if in > 0 {
			base := cs - at
			b.add(cspan{start: at, end: at + in, base: base, ref: kLeaf<<refShift | b.leafRef(dev), chain: b.chain(own, -base, nil, 0)})
		}
		if in < r { // past the leaf's end: the per-level walk reports it
			b.step(at+in, at+r)
		}
		return
	}
	cm := b.kid(dev.md)
	if cm == nil { // not a child the table declared (Areas): no composition
		b.ask(at, at+r)
		return
	}
	end := cs + r
	for i, pos := cm.find(cs), cs; pos < end; i++ {
		p := &cm.pcs[i]
		e := min(p.end, end)
		base := p.base + cs - at
		if p.ref>>refShift == kZero && p.chain == 0 && own == nil {
			base = 0 // a zero run translates nothing: let neighbours merge
		}
		b.add(cspan{start: at + (pos - cs), end: at + (e - cs), base: base, ref: b.importRef(cm, p.ref), chain: b.chain(own, -base, cm, p.chain)})
		pos = e
	}
}

// stripe adds a striped segment as one periodic piece. It reports false,
// having added nothing, when the layout the target declares disagrees with
// its Map, so that the caller maps it run by run.
func (b *cbuild) stripe(seg *Segment, st Striper, own *Hook) bool {
	chunk, areas := st.StripeLayout()
	k := uint64(len(areas))
	if chunk == 0 || k == 0 || seg.Len%(k*chunk) != 0 {
		return false
	}
	width := seg.Len / k
	for i, a := range areas {
		if a.Len != width || a.Dev == nil {
			return false
		}
		// The first chunk of every stripe, and the last chunk of the segment.
		if !agrees(seg.Target, uint64(i)*chunk, chunk, a.Dev, a.Start) {
			return false
		}
	}
	last := seg.Len/chunk - 1
	if a := areas[last%k]; !agrees(seg.Target, last*chunk, chunk, a.Dev, a.Start+(last/k)*chunk) {
		return false
	}
	pat := &stripePat{chunk: chunk, k: k, cshift: log2Exact(chunk), kshift: log2Exact(k), dst: make([]StripeDest, k)}
	pat.pow2 = pat.cshift >= 0 && pat.kshift >= 0
	for i, a := range areas {
		d, ok := b.stripeDst(a)
		if !ok { // a stripe past its leaf's end: the per-level walk reports it
			b.ask(seg.Begin, seg.End())
			return true
		}
		pat.dst[i] = d
	}
	b.own = append(b.own, pat)
	base := -seg.Begin // the offset in the segment is s - Begin
	b.add(cspan{start: seg.Begin, end: seg.End(), base: base, ref: kStripe<<refShift | b.patRef(pat), chain: b.chain(own, seg.Begin, nil, 0)})
	return true
}

// agrees reports whether tg maps offset off to sector cs of dev with a run
// of chunk sectors.
func agrees(tg Target, off, chunk uint64, dev *Dev, cs uint64) bool {
	m, err := tg.Map(off)
	return err == nil && m.Dev == dev && m.Sector == cs && m.Run == chunk
}

// stripeDst returns where stripe area a goes: one leaf run or one zero run
// when the whole area is one, else the area's device's map. ok is false
// when the area passes its leaf's end.
func (b *cbuild) stripeDst(a Area) (StripeDest, bool) {
	if a.Dev.leaf != nil {
		size := a.Dev.leaf.Size()
		if a.Start >= size || a.Len > size-a.Start {
			return StripeDest{}, false
		}
		return StripeDest{Kind: PieceLeaf, Leaf: a.Dev, Sector: a.Start}, true
	}
	cm := b.kid(a.Dev.md)
	if cm == nil {
		return StripeDest{}, false
	}
	p := &cm.pcs[cm.find(a.Start)]
	if p.chain == 0 && p.end-a.Start >= a.Len {
		switch p.ref >> refShift {
		case kLeaf:
			return StripeDest{Kind: PieceLeaf, Leaf: cm.leaves[p.ref&refMask], Sector: a.Start + p.base}, true
		case kZero:
			return StripeDest{Kind: PieceZero}, true
		}
	}
	return StripeDest{Kind: PieceNext, Map: cm, Sector: a.Start}, true
}

// add appends a span, merging it into the previous one when it continues
// it (same kind, destination, translation and hooks).
func (b *cbuild) add(sp cspan) {
	if sp.start >= sp.end {
		return
	}
	pcs := b.c.pcs
	if n := len(pcs); n > 0 {
		if l := &pcs[n-1]; l.ref == sp.ref && l.base == sp.base && l.chain == sp.chain {
			l.end = sp.end
			return
		}
	}
	if len(pcs) >= maxPieces-1 {
		b.full = true
		return
	}
	b.c.pcs = append(pcs, cpiece{end: sp.end, base: sp.base, ref: sp.ref, chain: sp.chain})
}

// importRef returns ref of a piece of map cm as a ref of the map being
// built.
func (b *cbuild) importRef(cm *Compiled, ref uint32) uint32 {
	kind, i := ref>>refShift, ref&refMask
	switch kind {
	case kLeaf:
		return kLeaf<<refShift | b.leafRef(cm.leaves[i])
	case kStripe:
		return kStripe<<refShift | b.patRef(cm.pats[i])
	case kStep, kAsk:
		return kind<<refShift | b.mapRef(cm.maps[i])
	}
	return ref
}

func (b *cbuild) leafRef(d *Dev) uint32      { return internRef(b, b.leafIx, &b.c.leaves, d) }
func (b *cbuild) mapRef(m *Compiled) uint32  { return internRef(b, b.mapIx, &b.c.maps, m) }
func (b *cbuild) patRef(p *stripePat) uint32 { return internRef(b, b.patIx, &b.c.pats, p) }

// internRef returns v's ref in the table list, adding v to it the first
// time (ix remembers each value's ref).
func internRef[T comparable](b *cbuild, ix map[T]uint32, list *[]T, v T) uint32 {
	if i, ok := ix[v]; ok {
		return i
	}
	i := b.newRef(len(*list))
	ix[v] = i
	*list = append(*list, v)
	return i
}

// newRef checks that a table of n refs can take one more.
func (b *cbuild) newRef(n int) uint32 {
	if n >= refMask {
		b.full = true
		return 0
	}
	return uint32(n)
}

// chain returns the id of the hook chain made of own (at delta, if not
// nil) followed by chain id of map below (if not nil).
func (b *cbuild) chain(own *Hook, delta uint64, below *Compiled, id uint32) uint32 {
	if own == nil && id == 0 {
		return 0
	}
	k := chainKey{below: below, id: id}
	if id == 0 {
		k.below = nil
	}
	if own != nil {
		k.seg, k.delta = own.Segment, delta
	}
	if c, ok := b.chainIx[k]; ok {
		return c
	}
	var hs []Hook
	if own != nil {
		h := *own
		h.Delta = delta
		hs = append(hs, h)
	}
	if id != 0 {
		hs = append(hs, below.chains[id]...)
	}
	c := uint32(len(b.c.chains))
	if len(b.c.chains) >= 1<<32-1 {
		b.full = true
		return 0
	}
	b.chainIx[k] = c
	b.c.chains = append(b.c.chains, hs)
	return c
}

// layout builds the bucket index over the pieces.
func (b *cbuild) layout() {
	c := b.c
	if cap(c.pcs) > len(c.pcs)+len(c.pcs)/8 {
		c.pcs = slices.Clone(c.pcs) // give back what append overallocated
	}
	c.shift, c.nb = bucketShift(c.size, len(c.pcs)-1)
	c.bkt = make([]uint32, c.nb+2)
	i := 0
	for bk := uint64(0); bk < c.nb; bk++ {
		for s := bk << c.shift; c.pcs[i].end <= s; {
			i++
		}
		c.bkt[bk] = uint32(i)
	}
	c.bkt[c.nb] = uint32(len(c.pcs) - 1)
	c.bkt[c.nb+1] = uint32(len(c.pcs) - 1)
	c.stats = b.stats()
}

// bucketShift returns the bucket width (as a shift) for n pieces over size
// sectors, and the number of buckets covering them: buckets 8 to 16
// average pieces wide. Lookups then read a bucket array small enough to
// stay in the L1 or L2 cache (4 bytes for every 8 to 16 pieces) and scan
// a few consecutive pieces, which costs one miss to memory and a stream
// the prefetcher follows. Buckets as wide as a piece (one piece or two to
// scan) were 3 to 5 times slower for random sectors on 3 x 100k segments,
// the bucket array itself missing; wider ones were as fast with the map
// in cache and slower when the walk between rounds had evicted it
// (BenchmarkCompiledLayouts, BenchmarkCompiledBucketWidths).
func bucketShift(size uint64, n int) (uint, uint64) {
	if size == 0 || n == 0 {
		return 63, 0
	}
	avg := max(size/uint64(n), 1)
	shift := min(uint(bits.Len64(avg)-1)+bucketPieces, 63)
	return shift, (size-1)>>shift + 1
}

// bucketPieces is log2 of the bucket width in average pieces (a variable
// for the benchmarks that chose it).
var bucketPieces uint = 4

// log2Exact returns log2(v) for a power of two, else -1.
func log2Exact(v uint64) int8 {
	if v == 0 || v&(v-1) != 0 {
		return -1
	}
	return int8(bits.TrailingZeros64(v))
}

func (b *cbuild) stats() CompiledStats {
	c := b.c
	s := CompiledStats{Pieces: len(c.pcs), Patterns: len(c.pats), Chains: len(c.chains) - 1, Buckets: len(c.bkt), Shift: c.shift}
	for i := range c.pcs {
		switch c.pcs[i].ref >> refShift {
		case kStripe:
			s.Stripes++
		case kStep, kAsk:
			s.Steps++
		}
	}
	s.Bytes = int(unsafe.Sizeof(Compiled{})) +
		cap(c.pcs)*int(unsafe.Sizeof(cpiece{})) + cap(c.bkt)*4 +
		(cap(c.leaves)+cap(c.maps)+cap(c.pats))*8 +
		cap(c.chains)*int(unsafe.Sizeof([]Hook{})) + cap(c.kids)*int(unsafe.Sizeof(childMap{}))
	for _, ch := range c.chains {
		s.Bytes += cap(ch) * int(unsafe.Sizeof(Hook{}))
	}
	// Patterns built here (those shared from below are counted there).
	for _, p := range b.own {
		s.Bytes += int(unsafe.Sizeof(stripePat{})) + cap(p.dst)*int(unsafe.Sizeof(StripeDest{}))
	}
	return s
}
