package rmapchain

import (
	"sync"

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

// Shrinkable is implemented by leaves whose device or file can get
// smaller under the tables that use them: Truncated returns the sectors
// past the leaf's current end (below its Size), which fail as a lost
// leaf's do.
type Shrinkable interface {
	Truncated() extent.Set
}

// Propagate translates sets of bad sectors, given per device in that
// device's own sector space, to every device above them. It returns the
// set for every device reached with a non-empty set, sources included.
// When within is not nil, only devices for which it returns true are
// visited.
func Propagate(g *stack.Graph, sources map[*stack.Dev]extent.Set, within func(*stack.Dev) bool) map[*stack.Dev]extent.Set {
	w := walkers.Get().(*walker)
	defer w.release()
	w.g, w.within = g, within
	for d, s := range sources {
		if s.Empty() || (within != nil && !within(d)) {
			continue
		}
		i := w.at(d)
		w.pend[i].given = append(w.pend[i].given, s)
	}
	out := make(map[*stack.Dev]extent.Set, max(len(w.pend), 8))
	// Devices in order of height: every device below d is done before d,
	// so d's set is complete when it is passed on. Parents are always
	// higher than their children, so the heap only gains devices above
	// the one being visited.
	for len(w.queue) > 0 {
		i := w.pop()
		d := w.pend[i].dev
		set := w.pend[i].set()
		if set.Empty() {
			continue
		}
		out[d] = set
		w.up(d, set)
	}
	return out
}

// pending is what has reached a device so far: runs from below (disjoint,
// because a mapping sends each sector to one place) and sets given by the
// caller (which may overlap anything).
type pending struct {
	dev    *stack.Dev
	height int
	runs   []extent.Run
	given  []extent.Set

	// Room for the usual few runs and one given set. runs and given start
	// in them; if pend grows and moves, they keep pointing at the old
	// array, which stays alive through them.
	runBuf   [2]extent.Run
	givenBuf [1]extent.Set
}

func (p *pending) set() extent.Set {
	if len(p.runs) == 0 && len(p.given) == 1 {
		return p.given[0]
	}
	s := extent.Disjoint(p.runs...)
	for _, g := range p.given {
		s = s.Union(g)
	}
	return s
}

// walkers keeps walkers, with their buffers and their visit method value,
// between calls: a Propagate of a few sectors then allocates little more
// than its result.
var walkers = sync.Pool{New: func() any {
	w := &walker{}
	w.visitFn = w.visit
	w.pend, w.queue, w.done = w.pendBuf[:0], w.queueBuf[:0], w.doneBuf[:0]
	return w
}}

// release clears w (so that it holds on to no graph or set) and returns it
// to the pool. Buffers that grew past their arrays are dropped.
func (w *walker) release() {
	// Entries past the buffers' length were used only if the slices
	// outgrew (and left) them.
	clear(w.pend)
	if len(w.pend) > len(w.pendBuf) {
		clear(w.pendBuf[:])
	}
	clear(w.done)
	if len(w.done) > len(w.doneBuf) {
		clear(w.doneBuf[:])
	}
	w.g, w.within, w.acc, w.child, w.set, w.doneSet = nil, nil, nil, nil, extent.Set{}, nil
	w.pend, w.queue, w.done = w.pendBuf[:0], w.queueBuf[:0], w.doneBuf[:0]
	walkers.Put(w)
}

// walker is the state of one Propagate: what has reached each device
// (pend; found through acc once there are many), a heap of the devices to
// visit ordered by height, and the child and set of the up call in
// progress, which visit reads (one method value serves every call to
// Graph.Uses). Propagate of a few sectors through a few devices fits in
// the walker's own buffers.
type walker struct {
	g       *stack.Graph
	within  func(*stack.Dev) bool
	pend    []pending
	acc     map[*stack.Dev]int // index in pend, once pend is long
	queue   []int              // heap of indexes in pend, by height
	visitFn func(stack.Use) bool

	child   *stack.Dev
	set     extent.Set
	done    []*stack.Segment
	doneSet map[*stack.Segment]bool

	pendBuf  [4]pending
	queueBuf [4]int
	doneBuf  [8]*stack.Segment
}

// at returns the index in pend of d's pending state, adding d.
func (w *walker) at(d *stack.Dev) int {
	if w.acc != nil {
		if i, ok := w.acc[d]; ok {
			return i
		}
	} else {
		for i := range w.pend {
			if w.pend[i].dev == d {
				return i
			}
		}
	}
	i := len(w.pend)
	w.pend = append(w.pend, pending{dev: d, height: w.g.Height(d)})
	p := &w.pend[i]
	p.runs, p.given = p.runBuf[:0], p.givenBuf[:0]
	if w.acc != nil {
		w.acc[d] = i
	} else if len(w.pend) > 8 {
		w.acc = make(map[*stack.Dev]int, 2*len(w.pend))
		for j := range w.pend {
			w.acc[w.pend[j].dev] = j
		}
	}
	w.push(i)
	return i
}

func (w *walker) less(a, b int) bool { return w.pend[w.queue[a]].height < w.pend[w.queue[b]].height }

func (w *walker) push(i int) {
	w.queue = append(w.queue, i)
	for j := len(w.queue) - 1; j > 0; {
		p := (j - 1) / 2
		if !w.less(j, p) {
			break
		}
		w.queue[j], w.queue[p] = w.queue[p], w.queue[j]
		j = p
	}
}

func (w *walker) pop() int {
	q := w.queue
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	w.queue = q[:n]
	for j := 0; ; {
		l, r, m := 2*j+1, 2*j+2, j
		if l < n && w.less(l, m) {
			m = l
		}
		if r < n && w.less(r, m) {
			m = r
		}
		if m == j {
			break
		}
		q[j], q[m] = q[m], q[j]
		j = m
	}
	return top
}

// up passes set (sectors of child) to every segment using them.
//
// The index is asked once per span of the set (the extent covering a run,
// spans that overlap merged), not once for the set's bounds: a few sectors
// that a level below scattered to both ends of a device would otherwise
// visit, and Rmap, every segment between them.
func (w *walker) up(child *stack.Dev, set extent.Set) {
	w.child, w.set = child, set
	w.done, w.doneSet = w.done[:0], nil
	runs := set.Runs()
	for i := 0; i < len(runs); {
		lo, hi := runs[i].Start, runs[i].End()
		for i++; i < len(runs) && runs[i].Start < hi; i++ {
			hi = max(hi, runs[i].End())
		}
		w.g.Uses(child, lo, hi, w.visitFn)
	}
}

// visit asks one segment using w.child for the sectors that map into w.set.
func (w *walker) visit(u stack.Use) bool {
	parent := u.Device.Dev()
	if w.within != nil && !w.within(parent) {
		return true
	}
	seg := u.Segment()
	if w.seen(seg) {
		return true
	}
	r := seg.Target.Rmap(w.child, w.set)
	if r.Empty() {
		return true
	}
	i := w.at(parent)
	for _, run := range r.Runs() {
		run.Start += seg.Begin
		w.pend[i].runs = append(w.pend[i].runs, run)
	}
	return true
}

// seen reports whether seg was asked already in this up call, and marks
// it. A segment using the child twice (two stripes on one device), or
// reached from two spans, is asked once. The list is searched while short
// and becomes a map when a set reaches many segments (a lost leaf under
// thousands of them).
func (w *walker) seen(seg *stack.Segment) bool {
	if w.doneSet != nil {
		if w.doneSet[seg] {
			return true
		}
		w.doneSet[seg] = true
		return false
	}
	for _, s := range w.done {
		if s == seg {
			return true
		}
	}
	if w.done = append(w.done, seg); len(w.done) > 16 {
		w.doneSet = make(map[*stack.Segment]bool, 2*len(w.done))
		for _, s := range w.done {
			w.doneSet[s] = true
		}
	}
	return false
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
// its poison and the sectors past its current end when it shrank
// (Shrinkable), plus everything past its end.
func LeafBad(l *stack.Dev) extent.Set {
	leaf := l.Leaf()
	if lo, ok := leaf.(Losable); ok && lo.Lost() {
		return beyond(0)
	}
	s := beyond(leaf.Size())
	if p, ok := leaf.(Poisoned); ok {
		s = s.Union(p.BadBlocks())
	}
	if t, ok := leaf.(Shrinkable); ok {
		s = s.Union(t.Truncated())
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
