package stack_test

// Helpers of the compiled-map tests: the per-level walk they compare
// against, a resolver that follows a compiled map to the end, targets with
// run-time hooks, and a random stack builder that uses them.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/all"
)

// Test targets: linear with a hook of each kind, and striped with its
// layout hidden or misdeclared.
type (
	mapioTarget struct{ stack.Target }
	endioTarget struct{ stack.Target } // an ErrorEndIOer: a hook
	fullEndIO   struct{ stack.Target } // an EndIOer that sees every request: a step
	delayTarget struct{ stack.Target }
	plainStripe struct{ stack.Target } // striped, neither Striper nor EndIOer
	lyingStripe struct{ stack.Target } // striped, declaring its stripes in reverse
	shortAreas  struct{ stack.Target } // linear declaring one sector of area, so the build lets it pass its child's end
)

func (mapioTarget) MapIO(*stack.Bio) (stack.Action, error)  { return stack.Remap, nil }
func (endioTarget) EndIO(_ *stack.Bio, err error) error     { return err }
func (endioTarget) EndIOErrorsOnly()                        {}
func (fullEndIO) EndIO(_ *stack.Bio, err error) error       { return err }
func (delayTarget) Hold(*stack.Bio) (time.Duration, func()) { return 0, nil }
func (s shortAreas) Areas() []stack.Area {
	a := s.Target.Areas()
	a[0].Len = 1
	return a
}
func (l lyingStripe) EndIO(b *stack.Bio, err error) error  { return err }
func (l lyingStripe) EndIOErrorsOnly()                     {}
func (l lyingStripe) StripeLayout() (uint64, []stack.Area) { return l.layout() }
func (l lyingStripe) layout() (uint64, []stack.Area) {
	chunk, a := l.Target.(stack.Striper).StripeLayout()
	r := make([]stack.Area, len(a))
	for i := range a {
		r[len(a)-1-i] = a[i]
	}
	return chunk, r
}

func init() {
	wrap := func(name, base string, w func(stack.Target) stack.Target) {
		stack.Register(stack.TargetType{Name: name, Version: [3]uint32{1, 0, 0}, New: func(ti *stack.TargetInfo, args []string) (stack.Target, error) {
			tt, _ := stack.LookupType(base)
			tg, err := tt.New(ti, args)
			if err != nil {
				return nil, err
			}
			return w(tg), nil
		}})
	}
	wrap("c-mapio", "linear", func(t stack.Target) stack.Target { return mapioTarget{t} })
	wrap("c-endio", "linear", func(t stack.Target) stack.Target { return endioTarget{t} })
	wrap("c-delay", "linear", func(t stack.Target) stack.Target { return delayTarget{t} })
	wrap("c-fullend", "linear", func(t stack.Target) stack.Target { return fullEndIO{t} })
	wrap("c-plain", "striped", func(t stack.Target) stack.Target { return plainStripe{t} })
	wrap("c-lying", "striped", func(t stack.Target) stack.Target { return lyingStripe{t} })
	wrap("c-short", "linear", func(t stack.Target) stack.Target { return shortAreas{t} })
}

// walked is where the per-level walk (or the compiled map) puts a sector.
type walked struct {
	kind   string // "leaf", "zero" or "fail"
	dev    string // the leaf, or the device reporting the failure
	sector uint64 // on dev
	steps  string // the levels that must be asked at I/O time (IOMapper, Delayer), top first
	hooks  string // the EndIOer levels, with their sectors, top first
	run    uint64 // sectors that stay contiguous (the walk's: to the first boundary)
	via    string // compiled only: the next and step pieces followed
}

func (w walked) String() string {
	return fmt.Sprintf("%s %s:%d steps[%s] hooks[%s]", w.kind, w.dev, w.sector, w.steps, w.hooks)
}

// same compares everything but the run.
func (w walked) same(o walked) bool {
	return w.kind == o.kind && w.dev == o.dev && w.sector == o.sector && w.steps == o.steps && w.hooks == o.hooks
}

// walkLevels maps sector s of d one level at a time, as the I/O path's
// resolve does: a sector past a table's end fails at that device, a Map
// error fails at that device, a sector past a leaf's end fails at the leaf.
func walkLevels(d *stack.Device, s uint64) walked {
	var w walked
	run := ^uint64(0)
	for dev := d.Dev(); ; {
		md := dev.Mapped()
		if md == nil {
			if s >= dev.Size() {
				w.kind, w.dev, w.sector = "fail", dev.Name(), s
				return w
			}
			w.kind, w.dev, w.sector, w.run = "leaf", dev.Name(), s, min(run, dev.Size()-s)
			return w
		}
		t := md.Active()
		i, ok := t.Find(s)
		if !ok {
			w.kind, w.dev, w.sector = "fail", md.Name(), s
			return w
		}
		seg := &t.Segments()[i]
		noteLevel(&w, md, seg, s)
		m, err := seg.Target.Map(s - seg.Begin)
		if err != nil {
			w.kind, w.dev, w.sector = "fail", md.Name(), s
			return w
		}
		run = min(run, m.Run)
		if m.Dev == nil {
			w.kind, w.run = "zero", run
			return w
		}
		dev, s = m.Dev, m.Sector
	}
}

// noteLevel records the run-time hooks of seg, the segment of sector s of md.
func noteLevel(w *walked, md *stack.Device, seg *stack.Segment, s uint64) {
	_, mapper := seg.Target.(stack.IOMapper)
	_, delayer := seg.Target.(stack.Delayer)
	_, opMapper := seg.Target.(stack.OpMapper)
	_, endIO := seg.Target.(stack.EndIOer)
	_, errorsOnly := seg.Target.(stack.ErrorEndIOer)
	behaves := mapper || delayer || opMapper
	switch {
	case behaves || endIO && !errorsOnly:
		w.steps += fmt.Sprintf(" %s:%d", md.Name(), s)
	case endIO:
		w.hooks += fmt.Sprintf(" %s/%d:%d", md.Name(), seg.Begin, s)
	}
}

// resolveCompiled follows c from sector s to where it lands: through next
// pieces, and through step pieces one level at a time as the I/O path
// will, continuing below a step with the step map's child maps. It also
// returns how many lookups it made.
func resolveCompiled(c *stack.Compiled, s uint64) (walked, int) {
	var w walked
	run := ^uint64(0)
	lookups := 0
	for {
		p := c.Lookup(s)
		lookups++
		if p.Run == 0 {
			panic(fmt.Sprintf("%s: lookup of %d gives run 0", c.Device().Name(), s))
		}
		run = min(run, p.Run)
		for _, h := range c.Hooks(p.Hooks()) {
			w.hooks += fmt.Sprintf(" %s/%d:%d", h.Device.Name(), h.Segment.Begin, c.HookSector(s, h))
		}
		switch p.Kind() {
		case stack.PlaceLeaf:
			w.kind, w.dev, w.sector, w.run = "leaf", p.Leaf().Name(), p.Sector, run
			return w, lookups
		case stack.PlaceZero:
			w.kind, w.run = "zero", run
			return w, lookups
		case stack.PlaceNext:
			w.via += " next"
			c, s = p.Map(), p.Sector
			continue
		}
		w.via += " step"
		// A step: this level as the walk does it.
		md := p.Map().Device()
		s = p.Sector
		t := p.Map().Table()
		i, ok := t.Find(s)
		if !ok {
			w.kind, w.dev, w.sector = "fail", md.Name(), s
			return w, lookups
		}
		seg := &t.Segments()[i]
		noteLevel(&w, md, seg, s)
		m, err := seg.Target.Map(s - seg.Begin)
		if err != nil {
			w.kind, w.dev, w.sector = "fail", md.Name(), s
			return w, lookups
		}
		run = min(run, m.Run)
		if m.Dev == nil {
			w.kind, w.run = "zero", run
			return w, lookups
		}
		if m.Dev.IsLeaf() {
			if m.Sector >= m.Dev.Size() {
				w.kind, w.dev, w.sector = "fail", m.Dev.Name(), m.Sector
				return w, lookups
			}
			w.kind, w.dev, w.sector, w.run = "leaf", m.Dev.Name(), m.Sector, min(run, m.Dev.Size()-m.Sector)
			return w, lookups
		}
		c = p.Map().Child(m.Dev)
		if c == nil {
			panic(fmt.Sprintf("%s: no compiled map of child %s", md.Name(), m.Dev.Name()))
		}
		s = m.Sector
	}
}

// checkSector compares the compiled map of d with the per-level walk at
// sector s, and checks that the run the map gives really is contiguous.
func checkSector(c *stack.Compiled, d *stack.Device, s uint64) error {
	got, _ := resolveCompiled(c, s)
	want := walkLevels(d, s)
	if !got.same(want) {
		return fmt.Errorf("%s sector %d: compiled %v, walked %v", d.Name(), s, got, want)
	}
	if got.kind == "fail" {
		return nil
	}
	if got.run < want.run {
		return fmt.Errorf("%s sector %d: compiled run %d shorter than the walk's %d", d.Name(), s, got.run, want.run)
	}
	// The last sector of the run continues the first (the sectors between
	// are checked as sectors of their own by the brute-force tests).
	if got.run > 1 {
		last := walkLevels(d, s+got.run-1)
		if last.kind != got.kind || last.dev != got.dev || (got.kind == "leaf" && last.sector != got.sector+got.run-1) {
			return fmt.Errorf("%s sector %d: compiled run %d, but sector %d is %v (from %v)", d.Name(), s, got.run, s+got.run-1, last, got)
		}
	}
	return nil
}

// checkAll compares every sector of d (and two past its end) through c.
func checkAll(c *stack.Compiled, d *stack.Device) error {
	for s := uint64(0); s < d.Size()+2; s++ {
		if err := checkSector(c, d, s); err != nil {
			return err
		}
	}
	return nil
}

// randStack is a random stack for compiled-map tests: leaves of random
// sizes (one may be empty, so that tables map past its end), devices with
// no table, and mapped devices of every kind of segment over leaves and
// earlier devices.
type randStack struct {
	p       *stack.Pool
	leaves  []*stacktest.MemLeaf
	devs    []*stack.Device // in creation order; lower ones first
	depth   map[*stack.Device]int
	noTable *stack.Device
}

type randOpts struct {
	devices, maxSegs int
	maxLen           uint64 // of a linear piece
	maxDepth         int
	hooks            bool   // use the c-* targets too
	stateful         bool   // use dust and flakey too (with a clock that stands still and seeded chance)
	leafSectors      uint64 // the most sectors of a leaf (default 528)
}

func newRandStack(rng *rand.Rand, o randOpts) (*randStack, error) {
	rs := &randStack{depth: map[*stack.Device]int{}}
	nl := 1 + rng.IntN(3)
	most := o.leafSectors
	if most == 0 {
		most = 528
	}
	for i := range nl {
		size := 16 + rng.Uint64N(most-15)
		rs.leaves = append(rs.leaves, stacktest.NewMemLeaf(fmt.Sprintf("/c/leaf%d", i), fmt.Sprintf("leaf%d", i), size, !o.stateful))
	}
	if rng.IntN(4) == 0 {
		rs.leaves = append(rs.leaves, stacktest.NewMemLeaf("/c/empty", "empty", 0, true))
	}
	rs.p = stack.NewPool(stacktest.Opener(rs.leaves...))
	if o.stateful {
		stacktest.SetEnv(rs.p, stacktest.NewClock(1000*time.Second), rng.Uint64())
		for _, l := range rs.leaves {
			for i := range l.Data() {
				l.Data()[i] = byte(rng.Uint32())
			}
		}
	}
	if rng.IntN(4) == 0 {
		d, err := rs.p.Create("notable", "")
		if err != nil {
			return nil, err
		}
		rs.noTable = d
	}
	for i := range o.devices {
		name := fmt.Sprintf("d%d", i)
		text := rs.randTable(rng, o)
		d, err := rs.p.Create(name, "")
		if err != nil {
			return nil, err
		}
		if err := rs.p.LoadText(d, text, stack.SourceInline); err != nil {
			return nil, fmt.Errorf("%s:\n%s\n%w", name, text, err)
		}
		if err := rs.p.Resume(d); err != nil {
			return nil, err
		}
		rs.devs = append(rs.devs, d)
		rs.noteDepths()
	}
	return rs, nil
}

type child struct {
	ref   string
	size  uint64 // what a table may map (0: anything, the build does not check)
	depth int
}

// children returns what a new table may use: leaves, the table-less
// device, and devices shallower than maxDepth.
func (rs *randStack) children(o randOpts, below int) []child {
	var out []child
	for _, l := range rs.leaves {
		out = append(out, child{l.Ref(), l.Size(), 0})
	}
	if rs.noTable != nil {
		out = append(out, child{rs.noTable.Name(), 0, 0})
	}
	for _, d := range rs.devs[:below] {
		if rs.depth[d] < o.maxDepth {
			out = append(out, child{d.Name(), d.Size(), rs.depth[d]})
		}
	}
	return out
}

// randTable returns a table over the leaves and the existing devices.
func (rs *randStack) randTable(rng *rand.Rand, o randOpts) string {
	return rs.randTableBelow(rng, o, len(rs.devs))
}

// randTableBelow returns a random table that uses only leaves and the first
// below devices.
func (rs *randStack) randTableBelow(rng *rand.Rand, o randOpts, below int) string {
	kids := rs.children(o, below)
	var lines []string
	var at uint64
	// span returns an offset and length of at most n sectors on c (any
	// offset on a child that reports no size).
	span := func(c child, n uint64) (uint64, uint64) {
		if c.size == 0 {
			return rng.Uint64N(64), n
		}
		n = min(n, c.size)
		return rng.Uint64N(c.size - n + 1), n
	}
	kinds := 6
	if o.hooks {
		kinds = 13
	}
	if o.stateful {
		kinds = 15
	}
	for range 1 + rng.IntN(o.maxSegs) {
		c := kids[rng.IntN(len(kids))]
		switch k := rng.IntN(kinds); {
		case k <= 1: // linear
			off, n := span(c, 1+rng.Uint64N(o.maxLen))
			lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, n, c.ref, off))
			at += n
		case k <= 3 || k == 9 || k == 10: // striped
			typ := "striped"
			if k == 9 {
				typ = "c-plain"
			} else if k == 10 {
				typ = "c-lying"
			}
			ns := 1 + rng.Uint64N(4)
			chunk := 1 + rng.Uint64N(12)
			if rng.IntN(2) == 0 {
				chunk = 1 << rng.IntN(4)
			}
			width := chunk * (1 + rng.Uint64N(6))
			var fit []child
			for _, kc := range kids {
				if kc.size == 0 || kc.size >= width {
					fit = append(fit, kc)
				}
			}
			if len(fit) == 0 {
				continue
			}
			var devs []string
			for range ns {
				sc := fit[rng.IntN(len(fit))]
				off, _ := span(sc, width)
				devs = append(devs, fmt.Sprintf("%s %d", sc.ref, off))
			}
			lines = append(lines, fmt.Sprintf("%d %d %s %d %d %s", at, width*ns, typ, ns, chunk, strings.Join(devs, " ")))
			at += width * ns
		case k == 4: // error, with or without a device
			n := 1 + rng.Uint64N(16)
			if rng.IntN(2) == 0 {
				off, m := span(c, n)
				lines = append(lines, fmt.Sprintf("%d %d error %s %d", at, m, c.ref, off))
				at += m
			} else {
				lines = append(lines, fmt.Sprintf("%d %d error", at, n))
				at += n
			}
		case k == 5: // zero
			n := 1 + rng.Uint64N(16)
			lines = append(lines, fmt.Sprintf("%d %d zero", at, n))
			at += n
		case k == 13: // dust, blocks of 1 to 8 sectors
			blk := uint64(1) << rng.IntN(4)
			off, n := span(c, blk*(1+rng.Uint64N(o.maxLen/blk+1)))
			if n < blk {
				continue
			}
			lines = append(lines, fmt.Sprintf("%d %d dust %s %d %d", at, n, c.ref, off, blk*512))
			at += n
		case k == 14: // flakey, down (up 0) or up, with random features
			off, n := span(c, 1+rng.Uint64N(o.maxLen))
			feats := [][]string{nil, {"error_reads"}, {"drop_writes"}, {"error_writes"}, {"error_reads", "drop_writes"},
				{"corrupt_bio_byte", fmt.Sprint(1 + rng.IntN(600)), "r", fmt.Sprint(rng.IntN(256)), "0"},
				{"corrupt_bio_byte", fmt.Sprint(1 + rng.IntN(600)), "w", fmt.Sprint(rng.IntN(256)), "0"},
				{"random_read_corrupt", "500000000"}, {"random_write_corrupt", "300000000"}}[rng.IntN(9)]
			f := ""
			if len(feats) > 0 {
				f = fmt.Sprintf(" %d %s", len(feats), strings.Join(feats, " "))
			}
			lines = append(lines, fmt.Sprintf("%d %d flakey %s %d %d 1%s", at, n, c.ref, off, rng.IntN(2), f))
			at += n
		case k == 11: // linear that may pass its child's end
			var off uint64
			if c.size > 0 {
				off = rng.Uint64N(c.size)
			}
			n := 1 + rng.Uint64N(o.maxLen)
			lines = append(lines, fmt.Sprintf("%d %d c-short %s %d", at, n, c.ref, off))
			at += n
		default: // 6, 7, 8, 12: linear with a hook
			typ := "c-fullend"
			if k < 9 {
				typ = [...]string{"c-mapio", "c-endio", "c-delay"}[k-6]
			}
			off, n := span(c, 1+rng.Uint64N(o.maxLen))
			lines = append(lines, fmt.Sprintf("%d %d %s %s %d", at, n, typ, c.ref, off))
			at += n
		}
	}
	if len(lines) == 0 {
		l := rs.leaves[0]
		n := max(l.Size(), 1)
		lines = append(lines, fmt.Sprintf("0 %d linear %s 0", n, l.Ref()))
	}
	return strings.Join(lines, "\n")
}

// noteDepths records each device's depth (1 + its deepest mapped child).
func (rs *randStack) noteDepths() {
	var depth func(d *stack.Device) int
	depth = func(d *stack.Device) int {
		h := 1
		for _, c := range d.Active().Devs() {
			if md := c.Mapped(); md != nil && md.Active() != nil {
				h = max(h, 1+depth(md))
			}
		}
		return h
	}
	for _, d := range rs.devs {
		rs.depth[d] = depth(d)
	}
}

// isRefusal reports whether err is a table the build refused (a random
// table can be refused, e.g. a mapped child that shrank).
func isRefusal(err error) bool {
	var te *stack.TableError
	return errors.As(err, &te)
}
