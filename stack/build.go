package stack

import (
	"fmt"
	"math"
	"strings"
)

// maxTargets is DM_MAX_TARGETS.
const maxTargets = 1 << 20

// builder carries the state of one table build: the device it is for and
// the leaves it opened that the pool does not hold yet.
type builder struct {
	p      *Pool
	dev    *Device
	name   string
	opened map[string]*Dev // leaves opened by this build, by ID
	refs   map[string]*Dev // references already resolved and checked by this build
}

// Build validates lines as a table for d and returns it, without loading
// it. Checks run in the kernel's order: for each line, zero length, unknown
// target type, contiguity ("Gap in table"), then the target's constructor;
// after all lines, every child area against its device's size. The first
// failure is returned as a *TableError.
//
// The table is built to the side: its targets are new (fresh state), it
// keeps the leaves it names open, and the caller either installs it with
// LoadTable or discards it with Table.Destroy.
func (p *Pool) Build(d *Device, lines []Line) (*Table, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, b, err := p.build(d, lines)
	if err != nil {
		b.discard()
		return nil, err
	}
	b.discardUnused(t)
	p.adopt(b.opened)
	t.aside = p
	for _, c := range t.children() {
		if c.leaf != nil {
			p.refs[c]++
		}
	}
	return t, nil
}

func (p *Pool) build(d *Device, lines []Line) (*Table, *builder, error) {
	b := &builder{p: p, dev: d, name: d.Name(), opened: map[string]*Dev{}, refs: map[string]*Dev{}}
	fail := func(l Line, typ, text string, err error) (*Table, *builder, error) {
		return nil, b, &TableError{Device: b.name, Line: l.No, Type: typ, Text: text, Err: err}
	}
	if len(lines) == 0 {
		return fail(Line{}, "", b.name+": no targets specified", ErrInvalid)
	}
	if len(lines) > maxTargets {
		return fail(Line{}, "", fmt.Sprintf("%s: too many targets (%d > %d)", b.name, len(lines), maxTargets), ErrInvalid)
	}
	t := &Table{segs: make([]Segment, 0, len(lines))}
	highs := make([]uint64, 0, len(lines))
	var next uint64
	for i, l := range lines {
		if l.Len == 0 {
			return fail(l, l.Type, b.name+": zero-length target", ErrInvalid)
		}
		tt, ok := LookupType(l.Type)
		if !ok {
			return fail(l, l.Type, fmt.Sprintf("%s: %s: unknown target type", b.name, l.Type), ErrInvalid)
		}
		if (i == 0 && l.Start != 0) || (i > 0 && l.Start != next) {
			return fail(l, l.Type, fmt.Sprintf("%s: %s: Gap in table (-EINVAL)", b.name, l.Type), ErrInvalid)
		}
		if l.Len > maxTableSize-l.Start { // Start is 0 or the previous end, so at most maxTableSize
			return fail(l, l.Type, fmt.Sprintf("%s: %s: table longer than %d sectors (-EINVAL)", b.name, l.Type, maxTableSize), ErrInvalid)
		}
		ti := &TargetInfo{Begin: l.Start, Len: l.Len, Type: l.Type, Device: b.name, Clock: p.clock, b: b}
		tgt, err := tt.New(ti, SplitArgs(l.Params))
		if err == nil && ti.maxIOLen > math.MaxUint32 {
			// dm_set_target_max_io_len's refusal.
			destroyTarget(tgt)
			err = Errorf("Maximum size of target IO is too large", nil)
		}
		if err != nil {
			t.destroy()
			return fail(l, l.Type, ctrText(b.name, l.Type, err), causeOf(err))
		}
		t.segs = append(t.segs, Segment{Begin: l.Start, Len: l.Len, Type: l.Type, Target: tgt, io: classify(tgt), maxIO: ti.maxIOLen, ti: ti})
		highs = append(highs, l.Start+l.Len-1)
		next = l.Start + l.Len
	}
	t.size = next
	// device_area_is_invalid, for every area of every segment in order.
	for i := range t.segs {
		for _, a := range t.segs[i].Target.Areas() {
			size := a.Dev.Size()
			if size == 0 {
				continue // the kernel skips devices reporting no size
			}
			if a.Start >= size || a.Start+a.Len > size {
				t.destroy()
				return fail(lines[i], t.segs[i].Type, fmt.Sprintf("%s: %s too small for target: start=%d, len=%d, dev_size=%d",
					b.name, a.Dev.Name(), a.Start, a.Len, size), ErrInvalid)
			}
		}
	}
	t.ix = newIndex(highs)
	t.devs = distinctDevs(t.segs)
	for i := range t.segs {
		seg := &t.segs[i]
		seg.flush = flushDevs(seg)
		seg.ti.dev, seg.ti.table, seg.ti.seg = d, t, i
		seg.ti.b = nil // the build is over: GetDevice is for constructors
	}
	return t, b, nil
}

// maxTableSize keeps every sector of every table inside the range the
// extent package computes with.
const maxTableSize = 1 << 62

// ctrText renders a constructor failure as the kernel logs it:
// "<dev>: <type>: <ti->error> (<errno>)", followed by the cause when there
// is one ("Device lookup failed (-ENOENT): open /x: no such file").
func ctrText(dev, typ string, err error) string {
	msg, cause := err.Error(), error(nil)
	if ce, ok := err.(*CtrError); ok {
		msg, cause = ce.Msg, ce.Err
	}
	text := fmt.Sprintf("%s: %s: %s (%s)", dev, typ, msg, errnoName(Errno(causeOf(err))))
	if cause != nil {
		text += ": " + cause.Error()
	}
	return text
}

// causeOf returns the error a refusal should match: the constructor's
// cause if it has one, else ErrInvalid.
func causeOf(err error) error {
	if ce, ok := err.(*CtrError); ok && ce.Err != nil {
		return ce.Err
	}
	return ErrInvalid
}

// getDevice is dm_get_device for a table being built. A reference the
// build has resolved and checked before gives the same device again without
// opening it or walking the graph: nothing it depends on can change while
// the pool is locked for the build.
func (b *builder) getDevice(ref string) (*Dev, error) {
	if d, ok := b.refs[ref]; ok {
		return d, nil
	}
	d, err := b.resolve(ref)
	if err == nil {
		b.refs[ref] = d
	}
	return d, err
}

func (b *builder) resolve(ref string) (*Dev, error) {
	p := b.p
	if ref == "" {
		return nil, fmt.Errorf("%w: empty device reference", ErrNotFound)
	}
	var dev *Dev
	if md := p.lookupMapped(ref); md != nil {
		dev = &md.dev
	} else if ma, mi, ok := parseDevno(ref); ok && ma == MappedMajor {
		return nil, fmt.Errorf("%w: no mapped device %d:%d", ErrNotFound, ma, mi)
	} else {
		l, err := b.openLeaf(ref)
		if err != nil {
			return nil, err
		}
		dev = l
	}
	if md := dev.md; md != nil {
		if md == b.dev {
			return nil, fmt.Errorf("%w: a table cannot use its own device %s", ErrInvalid, md.Name())
		}
		if path := p.pathTo(md, b.dev); path != nil {
			return nil, fmt.Errorf("%w: %s already uses %s (%s)", ErrLoop, md.Name(), b.dev.Name(), strings.Join(path, " -> "))
		}
	}
	if h, ok := p.holders[dev]; ok {
		return nil, fmt.Errorf("%w: %s is held by %s", ErrBusy, dev.Name(), h)
	}
	return dev, nil
}

func (b *builder) openLeaf(ref string) (*Dev, error) {
	p := b.p
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	id := leaf.ID()
	if d, ok := p.leaves[id]; ok {
		if d.leaf != leaf {
			closeLeaf(leaf)
		}
		return d, nil
	}
	if d, ok := b.opened[id]; ok {
		if d.leaf != leaf {
			closeLeaf(leaf)
		}
		return d, nil
	}
	d := &Dev{leaf: leaf}
	b.opened[id] = d
	return d, nil
}

// discard closes every leaf the build opened.
func (b *builder) discard() {
	for _, d := range b.opened {
		closeLeaf(d.leaf)
	}
	b.opened = nil
}

// discardUnused closes the leaves the build opened that t does not use.
func (b *builder) discardUnused(t *Table) {
	used := map[*Dev]bool{}
	for _, d := range t.children() {
		used[d] = true
	}
	for id, d := range b.opened {
		if !used[d] {
			closeLeaf(d.leaf)
			delete(b.opened, id)
		}
	}
}

// pathTo returns the chain of names from -> ... -> to if from reaches to
// through the tables in either slot, or nil.
func (p *Pool) pathTo(from, to *Device) []string {
	seen := map[*Device]bool{}
	var walk func(d *Device) []string
	walk = func(d *Device) []string {
		if d == to {
			return []string{d.Name()}
		}
		if seen[d] {
			return nil
		}
		seen[d] = true
		for _, t := range []*Table{d.active.Load(), d.inactive} {
			for _, c := range t.children() {
				if c.md != nil {
					if path := walk(c.md); path != nil {
						return append([]string{d.Name()}, path...)
					}
				}
			}
		}
		return nil
	}
	return walk(from)
}
