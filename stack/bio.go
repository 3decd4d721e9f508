package stack

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// The request path: a request walked level by level as the kernel's bios
// go, for the parts of a stack whose targets have run-time behaviour
// (IOMapper, Delayer, EndIOer). At each mapped device the request is split
// into clones at segment boundaries and at the MaxIOLen windows of the
// segments; a clone reaches its target as one Bio (Hold, MapIO, and when
// every part of it below has finished, EndIO), and is then split into the
// contiguous runs of Map, each sent to the child as a request of its own.
// Levels with pure targets do the same without any call but Map.
//
// The walk is depth first and in order, so the parts of a request finish
// in order of their position at the top: a request that fails stops there
// and reports how far it got.
//
// Waiting: a request that must wait (in a delay, or at a suspended device
// below a target it was delivered to) leaves the gate; before it does it
// counts itself as held by every device on its path (they keep their
// tables until it is done, and their suspends wait for it), and after it
// comes back it goes on without asking them again. A request that reaches
// a suspended device with no Bio in progress holds nothing: it stops
// there, parks, and starts again from the top (see submit).

// bioReq is one request on the request path.
type bioReq struct {
	p    *Pool
	r    *request
	tok  gateToken // the gate token the request holds now
	path []pathEnt // the devices the current part passed, top first
	seen []*Device // devices found running since the gate was last entered
	// inBio counts Bios in progress (delivered to their target, EndIO
	// not called yet): while there is one, a wait keeps its place.
	inBio int
	// trust: every device below the top is known running until the
	// request leaves the gate (see passed.trust).
	trust bool
}

type pathEnt struct {
	d    *Device
	held bool
}

// bioFrom does bytes [from, limit) of r on the request path, inside the
// section that the fast path began (pass: the devices it found running).
// It returns the gate token the request holds at the end.
func (p *Pool) bioFrom(req *request, from, limit uint64, tok gateToken, pass *passed) (uint64, gateToken, error) {
	r := new(request) // a copy, so that the fast path's request stays off the heap
	*r = *req
	b := &bioReq{p: p, r: r, tok: tok, trust: pass.trust}
	for i := 0; i < pass.n; i++ {
		b.seen = append(b.seen, pass.slots[i].dev)
	}
	pos := r.off + from
	n, err := b.submit(&r.top.dev, r.op, pos, limit-from, r.part(from, limit-from), from)
	req.synced = r.synced
	return n, b.tok, err
}

// submit does op on bytes [pos, pos+n) of dev, whose data (nil for
// requests without data) is that of request bytes [at, at+n), and returns
// how many bytes from pos it did. op is the request's, or what a target
// above made of it (see clone).
//
// The clones: a request is cut at segment ends and, but for a discard to
// a segment with run-time behaviour (which dm sends whole), at the
// segment's MaxIOLen grid. A write-zeroes to a segment with run-time
// behaviour becomes writes of zeros (see zeroesAsWrites).
func (b *bioReq) submit(dev *Dev, op Op, pos, n uint64, data []byte, at uint64) (uint64, error) {
	if dev.md == nil {
		return b.leaf(dev, op, pos, n, data, at)
	}
	md := dev.md
	if err := b.arrive(md); err != nil {
		return 0, err
	}
	b.path = append(b.path, pathEnt{d: md})
	defer b.pop()
	t := md.active.Load()
	var seg *Segment
	done := uint64(0)
	for done < n {
		x := pos + done
		sector := x / SectorSize
		var err error
		if seg, err = findSeg(t, seg, sector); err != nil {
			return done, stepError(b.r.op, md.Name(), sector, err)
		}
		end := min(pos+n, seg.End()*SectorSize)
		behaves := seg.io&ioBio != 0 // run-time behaviour
		if seg.maxIO > 0 && !(behaves && op == OpDiscard) {
			w := seg.Begin + ((sector-seg.Begin)/seg.maxIO+1)*seg.maxIO
			end = min(end, w*SectorSize)
		}
		var k uint64
		if behaves && op == OpWriteZeroes {
			end = min(end, x+zeroPageBio-(at+done)%zeroPageBio)
			k, err = b.clone(md, seg, OpWrite, x, end-x, zeroPages[:end-x:end-x], at+done)
		} else {
			k, err = b.clone(md, seg, op, x, end-x, sub(data, done, done+end-x), at+done)
		}
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// zeroPageBio is how much of a write-zeroes each write of zeros carries
// that replaces it at a segment with run-time behaviour: the kernel's
// targets with run-time behaviour (dust, flakey, delay) take no
// write-zeroes, so a device stacked on them has none either, and the
// block layer (__blkdev_issue_zero_pages) writes zeros instead, in bios
// of 256 pages of the zero page (BIO_MAX_VECS pages of 4 KiB), the first
// at the start of the request. The writes here are cut at the same
// bytes of the request, so that a target counting per request (flakey's
// corrupt_bio_byte) sees what the kernel's does.
const zeroPageBio = 256 << 12

// zeroPages is the zeros those writes carry, and what write-zeroes writes
// from on a leaf without LeafZeroer. Nothing writes into it: a target
// that changes a write's bytes changes a copy (see Bio).
var zeroPages [zeroPageBio]byte

// clone does one clone: op on bytes [x, x+n) of md, inside seg.
func (b *bioReq) clone(md *Device, seg *Segment, op Op, x, n uint64, data []byte, at uint64) (uint64, error) {
	if seg.io&ioBio == 0 {
		k, err := b.remap(md, seg, op, x, n, data, at)
		if _, stop := err.(errSuspended); err != nil && !stop && seg.io&ioErrEnd != 0 {
			bio := &Bio{Op: op, Pos: x - seg.Begin*SectorSize, Len: n, Data: data, FUA: b.r.fua}
			if e2 := seg.Target.(EndIOer).EndIO(bio, err); e2 != nil {
				err = e2
			}
		}
		return k, err
	}
	bio := &Bio{Op: op, Pos: x - seg.Begin*SectorSize, Len: n, Data: data, FUA: b.r.fua}
	b.inBio++
	defer func() { b.inBio-- }()
	k, err := b.deliver(md, seg, bio, func(bio *Bio) (uint64, error) { return b.remap(md, seg, bio.Op, x, n, bio.Data, at) })
	if op == OpRead && len(bio.Data) > 0 && len(data) > 0 && &bio.Data[0] != &data[0] {
		copy(data, bio.Data) // a read the target answered from a buffer of its own
	}
	return k, err
}

// rewrite checks what MapIO left of a Bio it remapped: the same bytes, and
// the same op or a write of what was a write-zeroes; Data as the op needs
// it (a read's and a write's Len bytes, nothing for the others).
func rewrite(b *Bio, op Op, pos, n uint64) error {
	switch {
	case b.Pos != pos || b.Len != n:
		return fmt.Errorf("moved the request from %d+%d to %d+%d", pos, n, b.Pos, b.Len)
	case b.Op != op && !(op == OpWriteZeroes && b.Op == OpWrite):
		return fmt.Errorf("made a %v of a %v", b.Op, op)
	case (b.Op == OpRead || b.Op == OpWrite) && uint64(len(b.Data)) != n:
		return fmt.Errorf("left %d bytes of data for a %v of %d", len(b.Data), b.Op, n)
	case b.Op != OpRead && b.Op != OpWrite && b.Data != nil:
		return fmt.Errorf("left data on a %v", b.Op)
	}
	return nil
}

// deliver gives bio to seg's target (Hold, MapIO), sends it on with send
// when the target remaps it, and ends it (EndIO). It returns how many bytes
// of the Bio were done, from its start.
func (b *bioReq) deliver(md *Device, seg *Segment, bio *Bio, send func(*Bio) (uint64, error)) (uint64, error) {
	var k uint64
	var err error
	if seg.io&ioDelay != 0 {
		wait, release := seg.Target.(Delayer).Hold(bio)
		if wait > 0 {
			err = b.delay(md, wait)
		}
		if release != nil {
			release()
		}
	}
	act := Remap
	if err == nil && seg.io&ioMapIO != 0 {
		op, pos, n := bio.Op, bio.Pos, bio.Len
		var merr error
		act, merr = seg.Target.(IOMapper).MapIO(bio)
		switch act {
		case Remap:
			if werr := rewrite(bio, op, pos, n); werr != nil {
				err = stepError(op, md.Name(), seg.Begin+pos/SectorSize, fmt.Errorf("%w: %s target's MapIO %w", ErrInvalid, seg.Type, werr))
			}
		case Done:
		case Kill:
			if merr == nil {
				merr = syscall.EIO
			}
			err = stepError(bio.Op, md.Name(), seg.Begin+bio.Sector(), merr)
		default:
			err = fmt.Errorf("%w: %s target's MapIO returned action %d", ErrInvalid, seg.Type, act)
		}
	}
	if err == nil {
		switch act {
		case Remap:
			k, err = send(bio)
		case Done:
			k = bio.Len
		}
	}
	if seg.io&ioEndIO != 0 {
		e2 := seg.Target.(EndIOer).EndIO(bio, err)
		switch {
		case e2 == nil:
			k, err = bio.Len, nil
		case err == nil:
			k, err = 0, b.levelError(md, seg, bio, e2)
		case e2 != err:
			err = b.levelError(md, seg, bio, e2)
		}
	}
	return k, err
}

// levelError makes err, which a target gave for bio, an *IOError at md
// (unless it is one).
func (b *bioReq) levelError(md *Device, seg *Segment, bio *Bio, err error) error {
	var ioe *IOError
	if errors.As(err, &ioe) {
		return err
	}
	return stepError(bio.Op, md.Name(), seg.Begin+bio.Sector(), err)
}

// remap sends op on bytes [x, x+n) of md, inside seg, to where seg's
// target places them (MapOp for an OpMapper, else Map), one contiguous run
// at a time.
func (b *bioReq) remap(md *Device, seg *Segment, op Op, x, n uint64, data []byte, at uint64) (uint64, error) {
	done := uint64(0)
	for done < n {
		y := x + done
		sector, intra := y/SectorSize, y%SectorSize
		m, err := mapOpAt(seg, op, sector)
		if err != nil {
			return done, stepError(b.r.op, md.Name(), sector, err)
		}
		k := min(n-done, m.Run*SectorSize-intra)
		part := sub(data, done, done+k)
		if m.Dev == nil {
			if op == OpRead {
				clear(part)
			}
		} else {
			k, err = b.submit(m.Dev, op, m.Sector*SectorSize+intra, k, part, at+done)
		}
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// leaf does op on bytes [pos, pos+n) of a leaf.
func (b *bioReq) leaf(dev *Dev, op Op, pos, n uint64, data []byte, at uint64) (uint64, error) {
	r := b.r
	avail, err := leafStep(dev.leaf, pos/SectorSize)
	if err != nil {
		return 0, stepError(r.op, dev.Name(), pos/SectorSize, err)
	}
	short := false
	if avail = avail*SectorSize - pos%SectorSize; n > avail {
		n, short = avail, true
	}
	k, err := b.p.leafIO(r, op, dev, pos, n, sub(data, 0, n))
	if err != nil {
		return k, &IOError{Op: r.op.String(), Device: r.top.Name(), Sector: (r.off + at + k) / SectorSize, Err: err}
	}
	if short {
		return k, stepError(r.op, dev.Name(), (pos+n)/SectorSize, errPastEnd)
	}
	return k, nil
}

// arrive lets the request into md, or parks it: in place when a Bio is in
// progress (or for a flush), else by stopping it (errSuspended).
func (b *bioReq) arrive(md *Device) error {
	for {
		if md.removed.Load() {
			return errRemovedIO(b.r, md)
		}
		if b.trust || slices.Contains(b.seen, md) {
			return nil
		}
		if !md.suspended.Load() {
			b.seen = append(b.seen, md)
			return nil
		}
		if b.inBio == 0 && b.r.op != OpFlush {
			return errSuspended{md}
		}
		if b.p.noWait.Load() {
			return &IOError{Op: b.r.op.String(), Device: b.r.top.Name(), Sector: b.r.off / SectorSize, Err: &SuspendedError{Device: md.Name()}}
		}
		if err := b.leave(func() error { return b.p.waitResume(b.r.ctx, md) }); err != nil {
			return err
		}
	}
}

// delay keeps the request waiting in md's delay target.
func (b *bioReq) delay(md *Device, wait time.Duration) error {
	wake := md.delayChan()
	if md.noDelay.Load() {
		return nil
	}
	return b.leave(func() error {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-wake:
		case <-b.r.ctx.Done():
			return b.r.ctx.Err()
		}
		return nil
	})
}

// leave runs wait outside the gate, holding every device on the path.
func (b *bioReq) leave(wait func() error) error {
	for i := range b.path {
		if e := &b.path[i]; !e.held {
			e.d.held.Add(1)
			e.held = true
		}
	}
	b.p.gate.exit(b.tok)
	err := wait()
	b.tok = b.p.gate.enter()
	b.seen, b.trust = b.seen[:0], false
	return err
}

// pop ends the request's passage through the last device on its path.
func (b *bioReq) pop() {
	e := b.path[len(b.path)-1]
	b.path = b.path[:len(b.path)-1]
	if e.held && e.d.held.Add(-1) == 0 {
		b.p.broadcast()
	}
}

// flush sends a flush down from the request's top device.
func (p *Pool) flush(req request) error {
	r := &req
	if r.top.removed.Load() {
		return errRemovedIO(r, r.top)
	}
	b := &bioReq{p: p, r: r, tok: p.gate.enter()}
	err := b.flushDev(&r.top.dev)
	p.gate.exit(b.tok)
	return err
}

// flushDev flushes dev: a leaf is synced (once per request), a mapped
// device sends the flush to every segment.
func (b *bioReq) flushDev(dev *Dev) error {
	if dev.md == nil {
		if slices.Contains(b.r.synced, dev) {
			return nil
		}
		b.r.synced = append(b.r.synced, dev)
		if s, ok := dev.leaf.(LeafSyncer); ok {
			if err := s.Sync(); err != nil {
				return &IOError{Op: OpFlush.String(), Device: b.r.top.Name(), Err: err}
			}
		}
		return nil
	}
	md := dev.md
	if err := b.arrive(md); err != nil {
		return err
	}
	b.path = append(b.path, pathEnt{d: md})
	defer b.pop()
	t := md.active.Load()
	var first error
	for i := range t.Segments() {
		seg := &t.segs[i]
		var err error
		if seg.io&ioBio == 0 {
			err = b.flushChildren(seg)
		} else {
			b.inBio++
			_, err = b.deliver(md, seg, &Bio{Op: OpFlush}, func(*Bio) (uint64, error) { return 0, b.flushChildren(seg) })
			b.inBio--
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (b *bioReq) flushChildren(seg *Segment) error {
	var first error
	for _, c := range seg.flush {
		if err := b.flushDev(c); err != nil && first == nil {
			first = err
		}
	}
	return first
}
