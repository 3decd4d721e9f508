package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"syscall"
)

// SectorSize is the size of a sector in bytes.
const SectorSize = 512

// request is one client request as the I/O path carries it.
type request struct {
	ctx  context.Context
	top  *Device
	op   Op
	data []byte // reads and writes: the client's bytes; nil otherwise
	off  uint64 // first byte at top
	n    uint64 // bytes
	fua  bool
	// synced lists the leaves a flush synced, or a FUA write touched (to
	// sync at the end).
	synced []*Dev
}

// part returns the client's bytes [from, from+n) of the request, or nil
// for a request without data.
func (r *request) part(from, n uint64) []byte {
	if r.data == nil {
		return nil
	}
	return r.data[from : from+n : from+n]
}

// sub returns bytes [a, b) of data, or nil for a request without data.
func sub(data []byte, a, b uint64) []byte {
	if data == nil {
		return nil
	}
	return data[a:b:b]
}

// errSuspended reports that a request reached a suspended device with
// nothing delivered to a target yet: the request parks until the device
// resumes and goes on from the top, where it stopped.
type errSuspended struct{ d *Device }

func (e errSuspended) Error() string { return e.d.Name() + " is suspended" }

// errBioPath reports that the fast path reached a segment whose target has
// run-time behaviour: the rest of the request goes the request path.
var errBioPath = errors.New("the request path takes over")

// SuspendedError is the failure of a request that reached a suspended
// device in a pool that does not wait (Pool.SetNoWait). It matches
// syscall.EAGAIN.
type SuspendedError struct {
	Device string // the suspended device
}

func (e *SuspendedError) Error() string { return e.Device + " is suspended" }

// Unwrap returns syscall.EAGAIN.
func (e *SuspendedError) Unwrap() error { return syscall.EAGAIN }

// submit performs a request (see Device.Do).
//
// The request runs in sections, each inside the gate (see gate). A
// section maps and moves as much as it can; it stops early only at a
// device that was already suspended when the section reached it, and the
// request then parks until that device resumes and goes on in a new
// section. Within a section, a device whose suspended flag was seen clear
// is not asked again: a Suspend (or the table swap of a Resume) that comes
// later waits for the section to end, so every piece of the section goes
// through the same tables. A read that one device maps into many pieces (a
// stripe) therefore never sees two of its tables.
//
// A section first takes the fast path (pieces): one lookup per level per
// contiguous piece, with the mapping remembered, and no call to any
// target but Map. When it reaches a segment whose target has run-time
// behaviour, the rest of the request takes the request path (bio.go),
// which walks it level by level as the kernel's bios go.
func (p *Pool) submit(ctx context.Context, top *Device, op Op, data []byte, off, n int64, fua bool) (int64, error) {
	switch {
	case off < 0:
		return 0, fmt.Errorf("%w: negative offset %d", ErrInvalid, off)
	case n < 0:
		return 0, fmt.Errorf("%w: negative length %d", ErrInvalid, n)
	case op > OpFlush:
		return 0, fmt.Errorf("%w: unknown request %v", ErrInvalid, op)
	case op != OpRead && op != OpFlush && top.readOnly.Load():
		return 0, &IOError{Op: op.String(), Device: top.Name(), Sector: uint64(off) / SectorSize, Err: syscall.EROFS}
	}
	if op == OpFlush {
		return 0, p.flush(request{ctx: ctx, top: top, op: op})
	}
	r := &request{ctx: ctx, top: top, op: op, data: data, off: uint64(off), n: uint64(n), fua: fua && op.IsWrite()}
	var done uint64
	var err error
	for {
		tok := p.gate.enter()
		var k uint64
		if c := top.cmap.Load(); c != nil { // loaded once per section, inside the gate
			k, tok, err = p.compiledSection(r, c, done, tok)
		} else {
			k, tok, err = p.section(r, done, tok)
		}
		p.gate.exit(tok)
		done += k
		if err == nil {
			break
		}
		s, ok := err.(errSuspended)
		if !ok {
			break
		}
		if err = p.parked(r, s.d); err != nil {
			break
		}
	}
	if r.fua && len(r.synced) > 0 {
		if serr := p.syncLeaves(r); err == nil {
			err = serr
		}
	}
	return int64(done), err
}

// parked waits for d, suspended, to resume (or go), for a request that
// holds nothing; in a pool that does not wait it fails at once.
func (p *Pool) parked(r *request, d *Device) error {
	if d.removed.Load() {
		return errRemovedIO(r, d)
	}
	if p.noWait.Load() {
		return &IOError{Op: r.op.String(), Device: r.top.Name(), Sector: r.off / SectorSize, Err: &SuspendedError{Device: d.Name()}}
	}
	return p.waitResume(r.ctx, d)
}

func errRemovedIO(r *request, d *Device) error {
	return &IOError{Op: r.op.String(), Device: d.Name(), Sector: r.off / SectorSize, Err: ErrRemoved}
}

// section does as much of r, from byte done, as one gate section can,
// walking level by level (a section whose top has a published compiled
// map takes compiledSection instead). It returns the gate token to exit
// with (the request path may have left the gate and come back).
func (p *Pool) section(r *request, done uint64, tok gateToken) (uint64, gateToken, error) {
	top := r.top
	if top.removed.Load() {
		return 0, tok, errRemovedIO(r, top)
	}
	var pass passed
	if _, ok := pass.slot(top); !ok {
		return 0, tok, errSuspended{top}
	}
	limit, endErr := r.limit(top.Size(), done) // the size is fixed until the section ends
	k, err := p.pieces(r, done, done, limit, &pass)
	if err == errBioPath {
		var k2 uint64
		k2, tok, err = p.bioFrom(r, done+k, limit, tok, &pass)
		k += k2
	}
	if err == nil {
		err = endErr
	}
	return k, tok, err
}

// limit returns how far (in bytes of the request) a request may go on a
// device of size sectors, and the error to end it with when that is short
// of its end: io.EOF for a read, ENOSPC for the rest.
func (r *request) limit(size, done uint64) (uint64, error) {
	end := size * SectorSize
	pos := r.off + done
	if pos+(r.n-done) <= end {
		return r.n, nil
	}
	limit := done
	if pos < end {
		limit = done + end - pos
	}
	if r.op == OpRead {
		return limit, io.EOF
	}
	return limit, &IOError{Op: r.op.String(), Device: r.top.Name(), Sector: max(pos, end) / SectorSize, Err: syscall.ENOSPC}
}

// passed is what a section of I/O knows of the mapped devices it has
// found running (see submit). Their tables cannot change until the section
// ends, so it also remembers, for each, the segment it used last (the next
// piece in it skips the table lookup) and the mapping it got last: a
// target's Map promises that its Run sectors stay contiguous on the child,
// so the next piece inside that run maps by an addition, without reading
// the segment or the target. A few devices are kept; a section that goes
// through more asks the others again, which is still safe.
type passed struct {
	n     int
	slots [6]passSlot
	// trust: the section holds a published compiled map of the top, so
	// that no device under it can change table before the section ends
	// (see CompiledMaps): none is asked whether it is suspended.
	trust bool
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
	if !ps.trust && d.suspended.Load() {
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

// pieces is the fast path: it does bytes [from, limit) of r one
// contiguous piece at a time and returns how many it did. It returns
// errBioPath, before doing anything of the piece, at a segment whose
// target has run-time behaviour. The section began at byte lo (the
// failure watchers see the request from there).
func (p *Pool) pieces(r *request, lo, from, limit uint64, pass *passed) (uint64, error) {
	done := from
	for done < limit {
		pos := r.off + done
		sector, intra := pos/SectorSize, pos%SectorSize
		res, err := p.resolve(r, sector, pass)
		if err != nil {
			if err == errBioPath {
				return done - from, err
			}
			if _, stop := err.(errSuspended); stop {
				return done - from, err
			}
			return done - from, p.failed(r, lo, limit, pos, err)
		}
		n := pieceBytes(res.run, intra, limit-done)
		m, err := p.leafIO(r, r.op, res.leaf, res.sector*SectorSize+intra, n, r.part(done, n))
		done += m
		if err != nil {
			at := r.off + done
			return done - from, p.failed(r, lo, limit, at, &IOError{Op: r.op.String(), Device: r.top.Name(), Sector: at / SectorSize, Err: err})
		}
	}
	return done - from, nil
}

// pieceBytes returns how many bytes of a piece of run sectors, entered
// intra bytes into its first sector, a request with left bytes to go does
// (the run may be too long to count in bytes).
func pieceBytes(run, intra, left uint64) uint64 {
	if run > (left+intra)/SectorSize {
		return left
	}
	return min(left, run*SectorSize-intra)
}

// resolved is where a sector of a mapped device lives.
type resolved struct {
	leaf   *Dev   // nil: no backing store (zero target)
	sector uint64 // sector on leaf
	run    uint64 // sectors that stay contiguous from there
}

// resolve maps sector of the request's top device down to a leaf, with
// the section's memory of each level (see passed) over stepAt.
func (p *Pool) resolve(r *request, sector uint64, pass *passed) (resolved, error) {
	run := ^uint64(0)
	d := &r.top.dev
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
		if !seg.holds(sector) {
			var err error
			if seg, err = md.active.Load().lookup(sector); err != nil {
				return resolved{}, stepError(r.op, md.Name(), sector, err)
			}
		}
		if seg.io&ioBio != 0 {
			return resolved{}, errBioPath
		}
		m, err := mapAt(seg, sector)
		if err != nil {
			return resolved{}, stepError(r.op, md.Name(), sector, err)
		}
		run = min(run, m.Run)
		if sl != nil {
			sl.seg = seg
			sl.from, sl.end = sector, sector+m.Run
			sl.child, sl.csector = m.Dev, m.Sector
		}
		if m.Dev == nil {
			return resolved{run: run}, nil
		}
		d, sector = m.Dev, m.Sector
	}
	n, err := leafStep(d.leaf, sector)
	if err != nil {
		return resolved{}, stepError(r.op, d.Name(), sector, err)
	}
	return resolved{leaf: d, sector: sector, run: min(run, n)}, nil
}

// leafIO does op (r's, or what a target above made of it) on n bytes of r
// at byte at of leaf (nil: a target without backing store, which reads
// zeros and drops the rest).
func (p *Pool) leafIO(r *request, op Op, leaf *Dev, at, n uint64, data []byte) (uint64, error) {
	if leaf == nil {
		if op == OpRead {
			clear(data)
		}
		return n, nil
	}
	l := leaf.leaf
	switch op {
	case OpRead:
		m, err := l.ReadAt(data, int64(at))
		return uint64(m), err
	case OpWrite:
		if r.fua && !slices.Contains(r.synced, leaf) {
			r.synced = append(r.synced, leaf)
		}
		m, err := l.WriteAt(data, int64(at))
		return uint64(m), err
	case OpWriteZeroes:
		if r.fua && !slices.Contains(r.synced, leaf) {
			r.synced = append(r.synced, leaf)
		}
		return writeZeroes(l, at, n)
	case OpDiscard:
		if dl, ok := l.(LeafDiscarder); ok {
			if err := dl.DiscardAt(int64(at), int64(n)); err != nil {
				return 0, err
			}
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: %v at a leaf", ErrInvalid, op)
}

func writeZeroes(l Leaf, at, n uint64) (uint64, error) {
	if z, ok := l.(LeafZeroer); ok {
		m, err := z.WriteZeroesAt(int64(at), int64(n))
		return uint64(m), err
	}
	done := uint64(0)
	for done < n {
		k := min(n-done, uint64(len(zeroPages)))
		m, err := l.WriteAt(zeroPages[:k], int64(at+done))
		done += uint64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// syncLeaves syncs the leaves a FUA request wrote.
func (p *Pool) syncLeaves(r *request) error {
	var first error
	for _, d := range r.synced {
		if s, ok := d.leaf.(LeafSyncer); ok {
			if err := s.Sync(); err != nil && first == nil {
				first = &IOError{Op: OpFlush.String(), Device: r.top.Name(), Sector: r.off / SectorSize, Err: err}
			}
		}
	}
	return first
}

// failed is the end of a fast-path request that failed at top byte f
// with err, the part the section did being top bytes [lo, hi) of the
// request: every failure watcher (ErrorEndIOer) on the path of f is given
// the request as it reached it (split at segments, MaxIOLen windows and the
// contiguous runs of the levels above), lowest first, as bios complete
// upward in the kernel. It returns the error the request ends with.
func (p *Pool) failed(r *request, lo, hi, f uint64, err error) error {
	type watcher struct {
		e   EndIOer
		bio Bio
	}
	var buf [4]watcher
	ws := buf[:0]
	a, b, topA := r.off+lo, r.off+hi, lo // the request at this level, in the level's bytes; topA: request byte of a
	at := f                              // the failing byte at this level
	for md := r.top; md != nil; {
		t := md.active.Load()
		seg, serr := findSeg(t, nil, at/SectorSize)
		if serr != nil {
			break
		}
		cl, ch := max(a, seg.Begin*SectorSize), min(b, seg.End()*SectorSize)
		if seg.maxIO > 0 {
			w := seg.Begin + (at/SectorSize-seg.Begin)/seg.maxIO*seg.maxIO
			cl, ch = max(cl, w*SectorSize), min(ch, (w+seg.maxIO)*SectorSize)
		}
		// The run of the clone that holds the failing byte.
		x := cl
		var m Mapping
		var merr error
		for {
			_, m, merr = stepAt(t, seg, x/SectorSize)
			end := min(ch, (x/SectorSize+m.Run)*SectorSize)
			if at < end || merr != nil {
				break
			}
			x = end
		}
		if seg.io&ioErrEnd != 0 {
			tb := topA + (cl - a)
			ws = append(ws, watcher{seg.Target.(EndIOer), Bio{Op: r.op, Pos: cl - seg.Begin*SectorSize, Len: ch - cl, Data: r.part(tb, ch-cl), FUA: r.fua}})
		}
		if merr != nil || m.Dev == nil || m.Dev.md == nil {
			break
		}
		end := min(ch, (x/SectorSize+m.Run)*SectorSize)
		childA := m.Sector*SectorSize + x%SectorSize
		topA += x - a
		a, b, at = childA, childA+(end-x), childA+(at-x)
		md = m.Dev.md
	}
	for i := len(ws) - 1; i >= 0; i-- {
		if e2 := ws[i].e.EndIO(&ws[i].bio, err); e2 != nil {
			err = e2
		}
	}
	return err
}
