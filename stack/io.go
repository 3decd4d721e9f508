package stack

import (
	"errors"
	"fmt"
	"io"
	"syscall"
)

// SectorSize is the size of a sector in bytes.
const SectorSize = 512

// errSuspended reports that an I/O reached a suspended device; the I/O
// path parks until it resumes and retries from the top.
type errSuspended struct{ d *Device }

func (e errSuspended) Error() string { return e.d.Name() + " is suspended" }

// do performs a read or write of buf at byte offset off of top.
//
// The I/O runs in sections, each inside the gate (see gate). A section
// maps and moves as much as it can; it stops early only at a device that
// was already suspended when the section reached it, and the I/O then
// parks until that device resumes and goes on in a new section. Within a
// section, a device whose suspended flag was seen clear is not asked
// again: a Suspend (or the table swap of a Resume) that comes later waits
// for the section to end, so every piece of the section goes through the
// same tables. A read that one device maps into many pieces (a stripe)
// therefore never sees two of its tables.
func (p *Pool) do(top *Device, buf []byte, off int64, write bool) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrInvalid, off)
	}
	done := 0
	for done < len(buf) {
		tok := p.gate.enter()
		var pass passed
		n, err := p.pieces(top, buf[done:], off+int64(done), write, &pass)
		p.gate.exit(tok)
		done += n
		if err == nil {
			break
		}
		var s errSuspended
		if errors.As(err, &s) {
			p.waitResume(s.d)
			continue
		}
		return done, err
	}
	return done, nil
}

// passed is what a section of I/O knows of the mapped devices it has
// found running (see do). Their tables cannot change until the section
// ends, so it also remembers, for each, the segment it used last (the
// next piece in it skips the table lookup) and the mapping it got last: a
// target's Map promises that its Run sectors stay contiguous on the child,
// so the next piece inside that run maps by an addition, without reading
// the segment or the target. A few devices are kept; a section that goes
// through more asks the others again, which is still safe.
type passed struct {
	n     int
	slots [6]passSlot
}

type passSlot struct {
	dev *Device
	seg *Segment // the segment used last, or nil
	// The mapping got last: sectors [from, end) of dev lie on child from
	// csector on (child nil: no backing store). Valid when end > from.
	from, end, csector uint64
	child              *Dev
}

// slot reports whether the section may go through d (d is not
// suspended, or the section found it running before) and returns d's
// slot in ps. The slot is nil when d is running but ps has no room to
// remember it.
func (ps *passed) slot(d *Device) (*passSlot, bool) {
	for i := 0; i < ps.n; i++ {
		if ps.slots[i].dev == d {
			return &ps.slots[i], true
		}
	}
	if d.suspended.Load() {
		return nil, false
	}
	if ps.n < len(ps.slots) {
		sl := &ps.slots[ps.n]
		*sl = passSlot{dev: d}
		ps.n++
		return sl, true
	}
	return nil, true
}

func (p *Pool) waitResume(d *Device) {
	p.resumeM.Lock()
	for d.suspended.Load() {
		p.resumed.Wait()
	}
	p.resumeM.Unlock()
}

// pieces does as much of the I/O as it can, one contiguous run at a time,
// and returns how many bytes it moved.
func (p *Pool) pieces(top *Device, buf []byte, off int64, write bool, pass *passed) (int, error) {
	op := "read"
	if write {
		op = "write"
	}
	if _, ok := pass.slot(top); !ok {
		return 0, errSuspended{top}
	}
	size := top.Size() // fixed until the section ends, now that top is passed
	done := 0
	for done < len(buf) {
		pos := uint64(off) + uint64(done)
		sector, intra := pos/SectorSize, pos%SectorSize
		if sector >= size {
			if write {
				return done, &IOError{Op: op, Device: top.Name(), Sector: sector, Err: syscall.ENOSPC}
			}
			return done, io.EOF
		}
		r, err := p.resolve(top, sector, op, pass)
		if err != nil {
			return done, err
		}
		n := min(uint64(len(buf)-done), r.run*SectorSize-intra)
		chunk := buf[done : done+int(n)]
		if r.leaf == nil { // no backing store: zeros in, writes dropped
			if !write {
				clear(chunk)
			}
			done += int(n)
			continue
		}
		at := int64(r.sector*SectorSize + intra)
		var m int
		if write {
			m, err = r.leaf.leaf.WriteAt(chunk, at)
		} else {
			m, err = r.leaf.leaf.ReadAt(chunk, at)
		}
		done += m
		if err != nil {
			failed := (pos + uint64(m)) / SectorSize
			p.endIOError(top, failed, err)
			return done, &IOError{Op: op, Device: top.Name(), Sector: failed, Err: err}
		}
	}
	return done, nil
}

// resolved is where a sector of a mapped device lives.
type resolved struct {
	leaf   *Dev   // nil: no backing store (zero target)
	sector uint64 // sector on leaf
	run    uint64 // sectors that stay contiguous from there
}

// resolve maps sector of top down to a leaf.
func (p *Pool) resolve(top *Device, sector uint64, op string, pass *passed) (resolved, error) {
	run := ^uint64(0)
	d := &top.dev
	for d.md != nil {
		md := d.md
		sl, ok := pass.slot(md)
		if !ok {
			return resolved{}, errSuspended{md}
		}
		if sl != nil && sector >= sl.from && sector < sl.end {
			run = min(run, sl.end-sector)
			if sl.child == nil {
				return resolved{run: run}, nil
			}
			d, sector = sl.child, sl.csector+(sector-sl.from)
			continue
		}
		var seg *Segment
		if sl != nil {
			seg = sl.seg
		}
		if seg == nil || sector < seg.Begin || sector-seg.Begin >= seg.Len {
			t := md.active.Load()
			if sector >= t.Size() {
				return resolved{}, &IOError{Op: op, Device: md.Name(), Sector: sector, Err: syscall.EIO}
			}
			if len(t.segs) == 1 {
				seg = &t.segs[0] // one segment (a plain linear volume): no lookup
			} else {
				seg = &t.segs[t.ix.find(sector)]
			}
			if sl != nil {
				sl.seg = seg
			}
		}
		m, err := seg.Target.Map(sector - seg.Begin)
		if err != nil {
			if errors.Is(err, ErrKill) {
				err = syscall.EIO
			}
			return resolved{}, &IOError{Op: op, Device: md.Name(), Sector: sector, Err: err}
		}
		run = min(run, m.Run)
		if sl != nil {
			sl.from, sl.end = sector, sector+min(m.Run, seg.End()-sector)
			sl.child, sl.csector = m.Dev, m.Sector
		}
		if m.Dev == nil {
			return resolved{run: run}, nil
		}
		d, sector = m.Dev, m.Sector
	}
	if size := d.leaf.Size(); sector >= size {
		return resolved{}, &IOError{Op: op, Device: d.Name(), Sector: sector, Err: syscall.EIO}
	} else {
		run = min(run, size-sector)
	}
	return resolved{leaf: d, sector: sector, run: run}, nil
}

// endIOError tells every EndIOer target on the path of a failed sector.
func (p *Pool) endIOError(top *Device, sector uint64, err error) {
	d := &top.dev
	for d.md != nil {
		t := d.md.active.Load()
		i, ok := t.Find(sector)
		if !ok {
			return
		}
		seg := &t.segs[i]
		m, merr := seg.Target.Map(sector - seg.Begin)
		if e, ok := seg.Target.(EndIOer); ok {
			e.EndIO(&Bio{Op: OpRead, Pos: (sector - seg.Begin) * SectorSize, Len: SectorSize}, err)
		}
		if merr != nil || m.Dev == nil {
			return
		}
		d, sector = m.Dev, m.Sector
	}
}

// Step is one level of the path of a sector down a stack (see Trace).
type Step struct {
	Device  *Device // the mapped device at this level
	Sector  uint64  // the sector on Device
	Segment Segment // the segment holding it
	Child   *Dev    // where it maps; nil for targets without a child
	CSector uint64  // the sector on Child
	Run     uint64  // sectors from Sector that stay contiguous on Child
	Err     error   // non-nil when I/O to the sector fails at this level
}

// Trace returns the path of sector of d down to a leaf: one Step per
// mapped device. A sector past the end of a table ends the path with a
// Step whose Err is set.
func (p *Pool) Trace(d *Device, sector uint64) ([]Step, error) {
	var steps []Step
	for dev := &d.dev; dev.md != nil; {
		md := dev.md
		t := md.active.Load()
		i, ok := t.Find(sector)
		if !ok {
			if len(steps) == 0 {
				return nil, fmt.Errorf("%w: sector %d is outside %s (%d sectors)", ErrInvalid, sector, md.Name(), t.Size())
			}
			steps = append(steps, Step{Device: md, Sector: sector, Err: syscall.EIO})
			break
		}
		seg := t.segs[i]
		m, err := seg.Target.Map(sector - seg.Begin)
		st := Step{Device: md, Sector: sector, Segment: seg, Child: m.Dev, CSector: m.Sector, Run: m.Run}
		if err != nil {
			st.Err, st.Child = syscall.EIO, nil
		}
		steps = append(steps, st)
		if st.Child == nil {
			break
		}
		dev, sector = m.Dev, m.Sector
	}
	return steps, nil
}
