package stack

import (
	"cmp"
	"slices"
	"strings"
	"sync"
)

// Graph is an immutable snapshot of the pool's active tables, built for
// walking failures upward: for every child device, the index of the
// segments (of every mapped device) that use it, and for every device its
// height (0 for leaves, 1 + the highest child for mapped devices).
//
// A Graph stays valid and consistent while the pool changes; Pool.Graph
// returns the same snapshot until an active table or the device set changes.
type Graph struct {
	devices []*Device
	leaves  []*Dev
	tables  map[*Device]*Table
	uses    map[*Dev]*areaIndex
	height  map[*Dev]int
	maxH    int
}

// Use is one area of one segment that uses a child device.
type Use struct {
	Device *Device // the mapped device whose active table has the segment
	Table  *Table
	Seg    int  // index of the segment in Table
	Area   Area // the child range the segment uses
}

// Segment returns the segment of the use.
func (u Use) Segment() *Segment { return &u.Table.segs[u.Seg] }

type graphCache struct {
	mu  sync.Mutex
	gen uint64
	g   *Graph
}

// Graph returns a snapshot of the active tables.
func (p *Pool) Graph() *Graph {
	p.mu.RLock()
	defer p.mu.RUnlock()
	c := &p.graph
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.g != nil && c.gen == p.gen {
		return c.g
	}
	c.g, c.gen = p.buildGraph(), p.gen
	return c.g
}

func (p *Pool) buildGraph() *Graph {
	g := &Graph{
		tables: make(map[*Device]*Table, len(p.byName)),
		uses:   map[*Dev]*areaIndex{},
		height: map[*Dev]int{},
	}
	for _, d := range p.byName {
		g.devices = append(g.devices, d)
	}
	slices.SortFunc(g.devices, func(a, b *Device) int { return strings.Compare(a.Name(), b.Name()) })
	raw := map[*Dev][]Use{}
	leafSet := map[*Dev]bool{}
	for _, d := range g.devices {
		t := d.active.Load()
		if t == nil {
			continue
		}
		g.tables[d] = t
		for i := range t.segs {
			for _, a := range t.segs[i].Target.Areas() {
				raw[a.Dev] = append(raw[a.Dev], Use{Device: d, Table: t, Seg: i, Area: a})
				if a.Dev.leaf != nil && !leafSet[a.Dev] {
					leafSet[a.Dev] = true
					g.leaves = append(g.leaves, a.Dev)
				}
			}
		}
	}
	for _, l := range p.leaves {
		if !leafSet[l] {
			leafSet[l] = true
			g.leaves = append(g.leaves, l)
		}
	}
	slices.SortFunc(g.leaves, func(a, b *Dev) int { return strings.Compare(a.Ref(), b.Ref()) })
	for dev, us := range raw {
		g.uses[dev] = newAreaIndex(us)
	}
	var h func(d *Dev) int
	h = func(d *Dev) int {
		if v, ok := g.height[d]; ok {
			return v
		}
		v := 0
		if d.md != nil {
			g.height[d] = 0 // cycles are refused at load; this only guards
			for _, c := range g.tables[d.md].children() {
				v = max(v, h(c)+1)
			}
		}
		g.height[d] = v
		g.maxH = max(g.maxH, v)
		return v
	}
	for _, d := range g.devices {
		h(&d.dev)
	}
	for _, l := range g.leaves {
		h(l)
	}
	return g
}

// Devices returns the mapped devices, sorted by name.
func (g *Graph) Devices() []*Device { return g.devices }

// Leaves returns the leaves that active tables use, sorted by reference.
func (g *Graph) Leaves() []*Dev { return g.leaves }

// Table returns d's active table in the snapshot, or nil.
func (g *Graph) Table(d *Device) *Table { return g.tables[d] }

// Height returns the height of d: 0 for a leaf or a device with no table,
// else one more than its highest child.
func (g *Graph) Height(d *Dev) int { return g.height[d] }

// MaxHeight returns the largest height in the graph.
func (g *Graph) MaxHeight() int { return g.maxH }

// Uses calls fn for every area of every active segment that uses child
// sectors overlapping [lo, hi), in order of area start, until fn returns
// false.
func (g *Graph) Uses(child *Dev, lo, hi uint64, fn func(Use) bool) {
	if ix := g.uses[child]; ix != nil && lo < hi {
		ix.each(lo, hi, fn)
	}
}

// Parents returns the mapped devices whose active tables use child.
func (g *Graph) Parents(child *Dev) []*Device {
	ix := g.uses[child]
	if ix == nil {
		return nil
	}
	var out []*Device
	for _, u := range ix.uses {
		if !slices.Contains(out, u.Device) {
			out = append(out, u.Device)
		}
	}
	slices.SortFunc(out, func(a, b *Device) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Ancestors returns every mapped device that uses d directly or through
// other devices, lowest first.
func (g *Graph) Ancestors(d *Dev) []*Device {
	seen := map[*Device]bool{}
	var out []*Device
	var walk func(*Dev)
	walk = func(c *Dev) {
		for _, p := range g.Parents(c) {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
				walk(&p.dev)
			}
		}
	}
	walk(d)
	slices.SortStableFunc(out, func(a, b *Device) int { return cmp.Compare(g.height[&a.dev], g.height[&b.dev]) })
	return out
}

// Descendants returns d and every device below it, lowest first.
func (g *Graph) Descendants(d *Dev) []*Dev {
	seen := map[*Dev]bool{}
	var out []*Dev
	var walk func(*Dev)
	walk = func(c *Dev) {
		if seen[c] {
			return
		}
		seen[c] = true
		out = append(out, c)
		if c.md != nil {
			for _, ch := range g.tables[c.md].children() {
				walk(ch)
			}
		}
	}
	walk(d)
	slices.SortStableFunc(out, func(a, b *Dev) int { return cmp.Compare(g.height[a], g.height[b]) })
	return out
}

// areaIndex is a static interval tree over the uses of one child: the uses
// sorted by area start form an implicit binary search tree (the middle of
// every index range is that range's root), and maxEnd[i] is the largest
// area end in the subtree rooted at i. A query visits O(log n + k) nodes
// when the areas do not overlap each other, the usual case.
//
// When no two areas overlap (every sector of the child is used at most
// once, as in most stacks) the ends are sorted too, and a query is a
// binary search for the first area ending after lo followed by a walk
// while areas start before hi.
type areaIndex struct {
	uses     []Use
	maxEnd   []uint64
	disjoint bool     // no two areas share a sector
	ends     []uint64 // when disjoint: the areas' ends, ascending, searched instead of uses
}

func newAreaIndex(uses []Use) *areaIndex {
	slices.SortFunc(uses, func(a, b Use) int { return cmp.Compare(a.Area.Start, b.Area.Start) })
	ix := &areaIndex{uses: uses, maxEnd: make([]uint64, len(uses)), disjoint: true}
	for i := 1; i < len(uses); i++ {
		if p := uses[i-1].Area; uses[i].Area.Start < p.Start+p.Len {
			ix.disjoint = false
			break
		}
	}
	ix.build(0, len(uses))
	if ix.disjoint {
		ix.ends = make([]uint64, len(uses))
		for i, u := range uses {
			ix.ends[i] = u.Area.Start + u.Area.Len
		}
	}
	return ix
}

// each calls fn for the uses whose areas overlap [lo, hi), in order of
// area start, until fn returns false.
func (ix *areaIndex) each(lo, hi uint64, fn func(Use) bool) {
	if !ix.disjoint {
		ix.query(0, len(ix.uses), lo, hi, fn)
		return
	}
	i, j := 0, len(ix.ends)
	for i < j { // first area ending after lo
		m := int(uint(i+j) >> 1)
		if ix.ends[m] <= lo {
			i = m + 1
		} else {
			j = m
		}
	}
	for ; i < len(ix.uses) && ix.uses[i].Area.Start < hi; i++ {
		if !fn(ix.uses[i]) {
			return
		}
	}
}

func (ix *areaIndex) build(l, r int) uint64 {
	if l >= r {
		return 0
	}
	m := (l + r) / 2
	a := ix.uses[m].Area
	e := max(a.Start+a.Len, ix.build(l, m), ix.build(m+1, r))
	ix.maxEnd[m] = e
	return e
}

func (ix *areaIndex) query(l, r int, lo, hi uint64, fn func(Use) bool) bool {
	if l >= r {
		return true
	}
	m := (l + r) / 2
	if ix.maxEnd[m] <= lo {
		return true // nothing in this subtree reaches lo
	}
	if !ix.query(l, m, lo, hi, fn) {
		return false
	}
	a := ix.uses[m].Area
	if a.Start >= hi {
		return true // this and everything to its right starts at or after hi
	}
	if a.Start+a.Len > lo && !fn(ix.uses[m]) {
		return false
	}
	return ix.query(m+1, r, lo, hi, fn)
}
