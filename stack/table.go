package stack

import (
	"fmt"
	"slices"
	"strings"
)

// Segment is one line of a table: sectors [Begin, Begin+Len) of the mapped
// device, mapped by Target.
type Segment struct {
	Begin  uint64
	Len    uint64
	Type   string
	Target Target
}

// End returns the first sector after the segment.
func (s *Segment) End() uint64 { return s.Begin + s.Len }

// Table is a built, validated table. Tables are immutable once built; a
// device changes table by swapping in another one.
type Table struct {
	segs []Segment
	ix   index
	size uint64
	devs []*Dev // distinct children in order of first use, set by build
}

// Size returns the table's length in sectors (the mapped device's size).
func (t *Table) Size() uint64 {
	if t == nil {
		return 0
	}
	return t.size
}

// Segments returns the table's segments in order. The slice must not be
// modified.
func (t *Table) Segments() []Segment {
	if t == nil {
		return nil
	}
	return t.segs
}

// Find returns the index of the segment holding sector s, and false when s
// is past the end of the table.
func (t *Table) Find(s uint64) (int, bool) {
	if t == nil || s >= t.size {
		return 0, false
	}
	return t.ix.find(s), true
}

// Lines returns the table as `dmsetup table` prints it, one line per
// segment.
func (t *Table) Lines() []string {
	out := make([]string, len(t.Segments()))
	for i := range out {
		s := &t.segs[i]
		out[i] = FormatLine(s.Begin, s.Len, s.Type, s.Target.Table())
	}
	return out
}

// StatusLines returns the table as `dmsetup status` prints it.
func (t *Table) StatusLines() []string {
	out := make([]string, len(t.Segments()))
	for i := range out {
		s := &t.segs[i]
		out[i] = FormatLine(s.Begin, s.Len, s.Type, s.Target.Status())
	}
	return out
}

// String returns Lines joined by newlines: the table as `dmsetup table`
// prints it.
func (t *Table) String() string { return strings.Join(t.Lines(), "\n") }

// StoredText returns the table as daxstack stores it: the printed lines,
// except that targets whose printed parameters leave out what builds them
// (Persister) give their full parameters. It parses back into the same
// table, dependencies included.
func (t *Table) StoredText() string {
	out := make([]string, len(t.Segments()))
	for i := range out {
		s := &t.segs[i]
		out[i] = FormatLine(s.Begin, s.Len, s.Type, storedParams(s.Target))
	}
	return strings.Join(out, "\n")
}

func storedParams(tg Target) string {
	if p, ok := tg.(Persister); ok {
		return p.StoredParams()
	}
	return tg.Table()
}

// Devs returns the distinct children of the table, in order of first use.
// The slice is the caller's.
func (t *Table) Devs() []*Dev {
	if c := t.children(); len(c) > 0 {
		return slices.Clone(c)
	}
	return nil
}

// children returns the distinct children without copying them. They are
// found once, when the table is built: the pool asks for them on every
// load, resume and remove, and walks them to refuse cycles, so with a
// table of many segments over one device each of those would otherwise
// cost a pass over every segment.
func (t *Table) children() []*Dev {
	if t == nil {
		return nil
	}
	if t.devs == nil && len(t.segs) > 0 {
		return distinctDevs(t.segs)
	}
	return t.devs
}

func distinctDevs(segs []Segment) []*Dev {
	out := []*Dev{}
	seen := map[*Dev]bool{}
	for i := range segs {
		for _, a := range segs[i].Target.Areas() {
			if !seen[a.Dev] {
				seen[a.Dev] = true
				out = append(out, a.Dev)
			}
		}
	}
	return out
}

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
func (p *Pool) Build(d *Device, lines []Line) (*Table, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, b, err := p.build(d, lines)
	if err != nil {
		b.discard()
		return nil, err
	}
	b.discardUnused(t)
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
		ti := &TargetInfo{Begin: l.Start, Len: l.Len, Type: l.Type, Device: b.name, Clock: p.clock, Rand: p.rnd, b: b}
		tgt, err := tt.New(ti, SplitArgs(l.Params))
		if err != nil {
			return fail(l, l.Type, ctrText(b.name, l.Type, err), causeOf(err))
		}
		t.segs = append(t.segs, Segment{Begin: l.Start, Len: l.Len, Type: l.Type, Target: tgt})
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
				return fail(lines[i], t.segs[i].Type, fmt.Sprintf("%s: %s too small for target: start=%d, len=%d, dev_size=%d",
					b.name, a.Dev.Name(), a.Start, a.Len, size), ErrInvalid)
			}
		}
	}
	t.ix = newIndex(highs)
	t.devs = distinctDevs(t.segs)
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
