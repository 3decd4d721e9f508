package rmapchain

import (
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// Poisoned is implemented by leaves that know their bad sectors.
type Poisoned interface {
	BadBlocks() extent.Set
}

// Losable is implemented by leaves that can disappear.
type Losable interface {
	Lost() bool
}

// Propagate translates sets of bad sectors, given per device in that
// device's own sector space, to every device above them. It returns the
// set for every device reached with a non-empty set, sources included.
// When within is not nil, only devices for which it returns true are
// visited.
func Propagate(g *stack.Graph, sources map[*stack.Dev]extent.Set, within func(*stack.Dev) bool) map[*stack.Dev]extent.Set {
	w := walker{g: g, within: within, acc: map[*stack.Dev]*pending{}}
	w.buckets = make([][]*stack.Dev, g.MaxHeight()+1)
	for d, s := range sources {
		if s.Empty() || (within != nil && !within(d)) {
			continue
		}
		w.at(d).given = append(w.at(d).given, s)
	}
	out := make(map[*stack.Dev]extent.Set, len(w.acc))
	for h := 0; h < len(w.buckets); h++ {
		for i := 0; i < len(w.buckets[h]); i++ {
			d := w.buckets[h][i]
			set := w.acc[d].set()
			if set.Empty() {
				continue
			}
			out[d] = set
			w.up(d, set)
		}
	}
	return out
}

// pending is what has reached a device so far: runs from below (disjoint,
// because a mapping sends each sector to one place) and sets given by the
// caller (which may overlap anything).
type pending struct {
	runs  []extent.Run
	given []extent.Set
}

func (p *pending) set() extent.Set {
	s := extent.Disjoint(p.runs...)
	for _, g := range p.given {
		s = s.Union(g)
	}
	return s
}

type walker struct {
	g       *stack.Graph
	within  func(*stack.Dev) bool
	acc     map[*stack.Dev]*pending
	buckets [][]*stack.Dev
}

func (w *walker) at(d *stack.Dev) *pending {
	p := w.acc[d]
	if p == nil {
		p = &pending{}
		w.acc[d] = p
		h := w.g.Height(d)
		w.buckets[h] = append(w.buckets[h], d)
	}
	return p
}

// up passes set (sectors of child) to every segment using them.
//
// The index is asked once per span of the set (the extent covering a run,
// spans that overlap merged), not once for the set's bounds: a few sectors
// that a level below scattered to both ends of a device would otherwise
// visit, and Rmap, every segment between them.
func (w *walker) up(child *stack.Dev, set extent.Set) {
	// A segment using child twice (two stripes on one device), or reached
	// from two spans, is asked once. done is searched while short and
	// becomes a map when a set reaches many segments (a lost leaf under
	// thousands of segments).
	var done []*stack.Segment
	var doneSet map[*stack.Segment]bool
	seen := func(seg *stack.Segment) bool {
		if doneSet != nil {
			if doneSet[seg] {
				return true
			}
			doneSet[seg] = true
			return false
		}
		for _, s := range done {
			if s == seg {
				return true
			}
		}
		if done = append(done, seg); len(done) > 16 {
			doneSet = make(map[*stack.Segment]bool, 2*len(done))
			for _, s := range done {
				doneSet[s] = true
			}
		}
		return false
	}
	visit := func(u stack.Use) bool {
		parent := u.Device.Dev()
		if w.within != nil && !w.within(parent) {
			return true
		}
		seg := u.Segment()
		if seen(seg) {
			return true
		}
		r := seg.Target.Rmap(child, set)
		if r.Empty() {
			return true
		}
		p := w.at(parent)
		for _, run := range r.Runs() {
			run.Start += seg.Begin
			p.runs = append(p.runs, run)
		}
		return true
	}
	runs := set.Runs()
	for i := 0; i < len(runs); {
		lo, hi := runs[i].Start, runs[i].End()
		for i++; i < len(runs) && runs[i].Start < hi; i++ {
			hi = max(hi, runs[i].End())
		}
		w.g.Uses(child, lo, hi, visit)
	}
}

// Sources returns, for every device in the graph, the sectors that fail by
// themselves at that device: for a leaf, its poison, or all of it when it
// is lost; for a mapped device, its always-failing segments (error targets);
// and for every device, everything past its end (a parent mapping beyond a
// child's end reads an error). When within is not nil only those devices
// are included.
func Sources(g *stack.Graph, within func(*stack.Dev) bool) map[*stack.Dev]extent.Set {
	out := map[*stack.Dev]extent.Set{}
	add := func(d *stack.Dev, s extent.Set) {
		if !s.Empty() {
			out[d] = s
		}
	}
	for _, l := range g.Leaves() {
		if within != nil && !within(l) {
			continue
		}
		add(l, LeafBad(l))
	}
	for _, md := range g.Devices() {
		d := md.Dev()
		if within != nil && !within(d) {
			continue
		}
		t := g.Table(md)
		s := beyond(t.Size())
		var runs []extent.Run
		for i, seg := range t.Segments() {
			if f, ok := seg.Target.(stack.Failer); ok {
				for _, r := range f.Failing().Runs() {
					r.Start += t.Segments()[i].Begin
					runs = append(runs, r)
				}
			}
		}
		add(d, s.Union(extent.Disjoint(runs...)))
	}
	return out
}

// LeafBad returns a leaf's bad sectors: all of them when it is lost, else
// its poison, plus everything past its end.
func LeafBad(l *stack.Dev) extent.Set {
	leaf := l.Leaf()
	if lo, ok := leaf.(Losable); ok && lo.Lost() {
		return beyond(0)
	}
	s := beyond(leaf.Size())
	if p, ok := leaf.(Poisoned); ok {
		s = s.Union(p.BadBlocks())
	}
	return s
}

// beyond returns every sector from size to the end of the sector space.
func beyond(size uint64) extent.Set {
	if size >= extent.MaxSector {
		return extent.Set{}
	}
	return extent.Of(extent.Extent{Start: size, Len: extent.MaxSector - size})
}

// BadRanges returns the bad ranges of each given device: exactly the
// sectors of it whose read would fail, because of poison or loss below it,
// error segments at any level, or a child shorter than its table maps.
func BadRanges(g *stack.Graph, devs ...*stack.Dev) map[*stack.Dev]extent.Set {
	in := map[*stack.Dev]bool{}
	for _, d := range devs {
		for _, x := range g.Descendants(d) {
			in[x] = true
		}
	}
	within := func(d *stack.Dev) bool { return in[d] }
	all := Propagate(g, Sources(g, within), within)
	out := make(map[*stack.Dev]extent.Set, len(devs))
	for _, d := range devs {
		out[d] = all[d].Clip(0, d.Size())
	}
	return out
}
