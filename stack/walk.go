package stack

import (
	"errors"
	"fmt"
	"syscall"
)

// The one walk down the mapping path. Every user of the path (the I/O
// path's fast lookups and its requests, Trace, MapRange, the EndIO of a
// failed request) takes its steps with stepAt and leafStep, so they agree
// on every answer, the error past the end of a device included: a sector
// past the end of a device below the one asked fails with EIO at that
// device, as the kernel's "attempt to access beyond end of device".

// errPastEnd is what a step past the end of a device below the top gives.
var errPastEnd = errors.New("beyond the end of the device")

// stepAt is one step at a mapped device whose active table is t: the
// segment holding sector (hint, when it holds it, saves the lookup) and
// where its target places the sector. A sector past the end of t gives
// errPastEnd and no segment; a target that fails the sector gives its
// error (ErrKill for the error target) with the segment and the Mapping's
// Run over the failing sectors.
func stepAt(t *Table, hint *Segment, sector uint64) (*Segment, Mapping, error) {
	seg, err := findSeg(t, hint, sector)
	if err != nil {
		return nil, Mapping{}, err
	}
	m, err := mapAt(seg, sector)
	return seg, m, err
}

// mapAt is the mapping half of stepAt: where seg's target places sector
// (of the device), its run kept inside the segment.
func mapAt(seg *Segment, sector uint64) (Mapping, error) {
	off := sector - seg.Begin
	m, err := seg.Target.Map(off)
	if m.Run == 0 || m.Run > seg.Len-off {
		m.Run = seg.Len - off // a run never leaves its segment
	}
	return m, err
}

// mapOpAt is mapAt for a request of kind op: MapOp for an OpMapper, else
// Map.
func mapOpAt(seg *Segment, op Op, sector uint64) (Mapping, error) {
	if seg.io&ioMapOp == 0 {
		return mapAt(seg, sector)
	}
	off := sector - seg.Begin
	m, err := seg.Target.(OpMapper).MapOp(op, off)
	if m.Run == 0 || m.Run > seg.Len-off {
		m.Run = seg.Len - off
	}
	return m, err
}

// holds reports whether sector lies in s (false for nil).
func (s *Segment) holds(sector uint64) bool {
	return s != nil && sector >= s.Begin && sector-s.Begin < s.Len
}

// findSeg is the lookup half of stepAt.
func findSeg(t *Table, hint *Segment, sector uint64) (*Segment, error) {
	if hint.holds(sector) {
		return hint, nil
	}
	return t.lookup(sector)
}

// lookup finds the segment of t holding sector, or errPastEnd.
func (t *Table) lookup(sector uint64) (*Segment, error) {
	if t == nil || sector >= t.size {
		return nil, errPastEnd
	}
	if len(t.segs) == 1 {
		return &t.segs[0], nil // one segment (a plain linear volume): no lookup
	}
	return &t.segs[t.ix.find(sector)], nil
}

// leafStep is the step at a leaf: the sectors from sector to its end, or
// errPastEnd.
func leafStep(l Leaf, sector uint64) (uint64, error) {
	size := l.Size()
	if sector >= size {
		return 0, errPastEnd
	}
	return size - sector, nil
}

// stepError is the error of a request that failed at a step: sector of
// the device named name. A target's kill and a sector past the end are EIO.
func stepError(op Op, name string, sector uint64, err error) *IOError {
	if errors.Is(err, ErrKill) || err == errPastEnd {
		err = syscall.EIO
	}
	return &IOError{Op: op.String(), Device: name, Sector: sector, Err: err}
}

// Step is one level of the path of a sector down a stack (see Trace).
type Step struct {
	Device  *Device // the mapped device at this level
	Sector  uint64  // the sector on Device
	Segment Segment // the segment holding it (zero past the end of Device)
	Child   *Dev    // where it maps; nil for targets without a child, and on error
	CSector uint64  // the sector on Child
	Run     uint64  // sectors from Sector that stay contiguous on Child (or fail alike)
	// Err is non-nil when I/O to the sector fails at this level: syscall.EIO
	// for an error target, a sector past the end of Device, or a child
	// sector past the end of a leaf (the step that maps there fails);
	// otherwise the target's error.
	Err error

	pastEnd bool // Err because a device (this one, or the leaf below) is too short
}

// Trace returns the path of sector of d down to a leaf: one Step per
// mapped device. A sector outside d is refused with ErrInvalid; a step
// that fails ends the path with its Err set.
func (p *Pool) Trace(d *Device, sector uint64) ([]Step, error) {
	if sector >= d.Size() {
		return nil, fmt.Errorf("%w: sector %d is outside %s (%d sectors)", ErrInvalid, sector, d.Name(), d.Size())
	}
	return trace(d, sector, nil), nil
}

// trace appends the steps of sector of d to steps.
func trace(d *Device, sector uint64, steps []Step) []Step {
	for md := d; md != nil; {
		seg, m, err := stepAt(md.active.Load(), nil, sector)
		st := Step{Device: md, Sector: sector, Child: m.Dev, CSector: m.Sector, Run: m.Run}
		if seg != nil {
			st.Segment = *seg
		}
		if err == errPastEnd {
			st.Run, st.pastEnd = ^uint64(0), true // everything from here fails alike
		}
		if err != nil {
			st.Err, st.Child = stepError(OpRead, md.Name(), sector, err).Err, nil
		} else if m.Dev != nil && m.Dev.md == nil {
			if n, lerr := leafStep(m.Dev.leaf, m.Sector); lerr != nil {
				st.Err, st.Child, st.pastEnd = syscall.EIO, nil, true
			} else {
				st.Run = min(st.Run, n)
			}
		}
		steps = append(steps, st)
		if st.Child == nil {
			break
		}
		md, sector = st.Child.md, st.CSector
	}
	return steps
}

// Piece is one contiguous part of a device range as it lands below: on a
// leaf, on a target without backing store (zero), or where reads fail.
type Piece struct {
	Start  uint64 // first sector on the device that was mapped
	Len    uint64 // sectors
	Leaf   *Dev   // the leaf holding the piece; nil for zero and failing pieces
	Sector uint64 // first sector on Leaf
	// Killed: reads of the piece fail at some level: an error segment, or
	// (PastEnd) a device below that is shorter than its parent maps.
	Killed  bool
	PastEnd bool
}

// MapRange maps sectors [start, start+count) of d down to the leaves,
// splitting wherever a segment, chunk or child boundary is crossed. A range
// reaching past the end of d is refused with ErrInvalid.
func (p *Pool) MapRange(d *Device, start, count uint64) ([]Piece, error) {
	if count == 0 {
		return nil, nil
	}
	if start+count < start || start+count > d.Size() {
		return nil, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", ErrInvalid, start, count, d.Name(), d.Size())
	}
	var out []Piece
	var steps []Step
	for pos, end := start, start+count; pos < end; {
		steps = trace(d, pos, steps[:0])
		pc := Piece{Start: pos, Len: end - pos}
		for _, s := range steps {
			pc.Len = min(pc.Len, s.Run)
		}
		last := steps[len(steps)-1]
		switch {
		case last.Err != nil:
			pc.Killed, pc.PastEnd = true, last.pastEnd
		case last.Child != nil:
			pc.Leaf, pc.Sector = last.Child, last.CSector
		}
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if prev.Leaf == pc.Leaf && prev.Killed == pc.Killed && prev.PastEnd == pc.PastEnd && (pc.Leaf == nil || prev.Sector+prev.Len == pc.Sector) {
				prev.Len += pc.Len
				pos += pc.Len
				continue
			}
		}
		out = append(out, pc)
		pos += pc.Len
	}
	return out, nil
}
