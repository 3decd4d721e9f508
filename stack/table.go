package stack

import (
	"slices"
	"strings"
	"sync"
)

// Segment is one line of a table: sectors [Begin, Begin+Len) of the mapped
// device, mapped by Target.
type Segment struct {
	Begin  uint64
	Len    uint64
	Type   string
	Target Target

	io    ioKind // what the I/O path calls at this segment
	maxIO uint64 // TargetInfo.SetMaxIOLen, 0 for none
	flush []*Dev // where a flush goes (see flushDevs)
	ti    *TargetInfo
}

// ioKind says which of the optional I/O interfaces a segment's target has.
type ioKind uint8

const (
	ioMapIO  ioKind = 1 << iota // IOMapper
	ioDelay                     // Delayer
	ioEndIO                     // EndIOer that sees every request
	ioErrEnd                    // ErrorEndIOer: sees failures only
	ioMapOp                     // OpMapper: placement by the kind of request
	// ioBio marks segments whose requests go one Bio at a time (the fast
	// path leaves them to the request path): the targets with run-time
	// behaviour.
	ioBio = ioMapIO | ioDelay | ioEndIO | ioMapOp
)

func classify(tg Target) ioKind {
	var k ioKind
	if _, ok := tg.(IOMapper); ok {
		k |= ioMapIO
	}
	if _, ok := tg.(Delayer); ok {
		k |= ioDelay
	}
	if _, ok := tg.(OpMapper); ok {
		k |= ioMapOp
	}
	if _, ok := tg.(EndIOer); ok {
		if _, errorsOnly := tg.(ErrorEndIOer); errorsOnly && k == 0 {
			k |= ioErrEnd
		} else {
			k |= ioEndIO
		}
	}
	return k
}

// flushDevs returns the children a flush of the segment goes to, as the
// kernel's targets remap their empty flush bios: an OpMapper's flush goes
// where MapOp(OpFlush, 0) places it (delay: its flush device; nowhere for
// an error or no device); any other target's to every device it uses
// (Areas: a stripe takes one flush per stripe), once each, except for a
// target that fails every sector (error), which takes no flush.
func flushDevs(seg *Segment) []*Dev {
	if om, ok := seg.Target.(OpMapper); ok {
		if m, err := om.MapOp(OpFlush, 0); err == nil && m.Dev != nil {
			return []*Dev{m.Dev}
		}
		return nil
	}
	if m, err := seg.Target.Map(0); err != nil && m.Run >= seg.Len {
		return nil
	}
	var out []*Dev
	for _, a := range seg.Target.Areas() {
		if !slices.Contains(out, a.Dev) {
			out = append(out, a.Dev)
		}
	}
	return out
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

	dtr   sync.Once // the targets' destructors run once
	aside *Pool     // built to the side (Pool.Build), not installed: holds leaf references in the pool
}

// destroy runs the destructor of every target of t that has one, once
// whatever the number of calls (see Destructor). Called when the table
// has left its device for good, after its last I/O, or when a build that
// made it fails or it was built to the side and is discarded.
func (t *Table) destroy() {
	if t == nil {
		return
	}
	t.dtr.Do(func() {
		for i := range t.segs {
			destroyTarget(t.segs[i].Target)
		}
	})
}

func destroyTarget(tg Target) {
	if d, ok := tg.(Destructor); ok {
		d.Dtr()
	}
}

// Destroy runs the destructors of a table built with Pool.Build that will
// not be loaded (it is never needed for tables loaded into a device: the
// pool destroys those when they leave it). Calling it more than once, or
// on nil, does nothing.
func (t *Table) Destroy() {
	if t == nil {
		return
	}
	t.destroy()
	if p := t.aside; p != nil {
		p.mu.Lock()
		if t.aside != nil {
			t.aside = nil
			p.unrefAside(t)
			p.sweep()
		}
		p.mu.Unlock()
	}
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
