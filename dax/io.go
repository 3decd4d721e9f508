package dax

import (
	"fmt"
	"io"
	"syscall"

	"github.com/daxstack/daxstack/extent"
)

// traceIO, when set (by tests), hears every move of bytes: "mmap",
// "pread", "pwrite" or "direct", and the leaf's byte range.
var traceIO func(how string, off, n int64)

// ReadAt reads len(p) bytes at byte off of the leaf, with io.ReaderAt
// semantics: a read that reaches the end of the leaf returns what it got
// and io.EOF. A read that touches a bad sector copies the bytes before it
// and fails with a *PoisonError; a read that faults fails with a
// *FaultError; both match syscall.EIO.
func (l *Leaf) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, leafError(l.name, fmt.Errorf("%w: read at negative offset %d", ErrRange, off))
	}
	m, s, err := l.enter()
	if err != nil {
		l.exit(s)
		return 0, err
	}
	end := int64(l.size) * SectorSize
	if off >= end {
		l.exit(s)
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof, trunc error
	if int64(len(p)) > end-off {
		p, eof = p[:end-off], io.EOF
	}
	if off+int64(len(p)) > int64(l.cur.Load())*SectorSize {
		var good int64
		good, trunc = l.beyond(m, off, int64(len(p)))
		p = p[:good]
	}
	n, err := l.read(m, p, off)
	l.exit(s)
	switch {
	case err != nil:
		err = l.explain(err)
	case trunc != nil:
		err = trunc
	default:
		err = eof
	}
	return n, err
}

// beyond cuts I/O of bytes [off, off+n) at the leaf's current end when it
// reaches past it (looking at the size again first: the leaf may have
// grown back). It returns how many bytes lie before the end and, if that
// is not all of them, the *TruncatedError for the rest.
func (l *Leaf) beyond(m *mapping, off, n int64) (int64, error) {
	now := l.refreshSize(m)
	limit := int64(now) * SectorSize
	if off+n <= limit {
		return n, nil
	}
	good := max(0, limit-off)
	return good, l.truncErr(off+good, off+n, now)
}

// truncErr is the error of I/O that met bytes [lo, hi) past the leaf's
// end, now sectors.
func (l *Leaf) truncErr(lo, hi int64, now uint64) error {
	first := uint64(lo) / SectorSize
	last := min(l.size, (uint64(hi)+SectorSize-1)/SectorSize)
	if last <= first {
		last = first + 1
	}
	return &TruncatedError{Leaf: l.name, Bad: extent.Extent{Start: first, Len: last - first}, Size: l.size, Now: now}
}

// WriteAt writes p at byte off of the leaf, with io.WriterAt semantics.
// Bad sectors p covers whole are cleared (and reported to OnPoison); a
// write that covers a bad sector in part fails with a *PoisonError and
// writes nothing.
func (l *Leaf) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, leafError(l.name, fmt.Errorf("%w: write at negative offset %d", ErrRange, off))
	}
	m, s, err := l.enter()
	defer l.exit(s)
	if err != nil {
		return 0, err
	}
	if m.ro {
		return 0, leafError(l.name, ErrReadOnly)
	}
	end := int64(l.size) * SectorSize
	var short, trunc error
	if off >= end || int64(len(p)) > end-off {
		if len(p) > 0 {
			short = leafError(l.name, fmt.Errorf("write of %d bytes at byte %d passes the end (%d bytes): %w", len(p), off, end, syscall.ENOSPC))
		}
		p = p[:max(0, min(int64(len(p)), end-off))]
	}
	if off+int64(len(p)) > int64(l.cur.Load())*SectorSize && len(p) > 0 {
		var good int64
		good, trunc = l.beyond(m, off, int64(len(p)))
		p = p[:good]
	}
	n, err := l.write(m, p, off)
	switch {
	case err != nil:
		err = l.explain(err)
	case trunc != nil:
		err = trunc
	default:
		err = short
	}
	return n, err
}

// touches reports whether I/O to bytes [lo, hi) must look at the poison
// list: it has a bad sector among the sectors the I/O touches, or, for a
// leaf whose bad pages go O_DIRECT, among the pages it touches.
func (l *Leaf) touches(s *extent.Set, lo, hi int64) bool {
	if s == nil || s.Empty() || lo >= hi {
		return false
	}
	if l.pageTaint {
		lo, hi = lo/pageSize*pageSize, (hi+pageSize-1)/pageSize*pageSize
	}
	first, last := uint64(lo)/SectorSize, (uint64(hi)+SectorSize-1)/SectorSize
	return s.Overlaps(extent.Extent{Start: first, Len: last - first})
}

func (l *Leaf) read(m *mapping, p []byte, off int64) (int, error) {
	hi := off + int64(len(p))
	if ps := l.poison.Load(); l.touches(ps, off, hi) {
		return l.readPoisoned(m, *ps, p, off)
	}
	return l.mmapRead(m, p, off)
}

// readPoisoned reads up to the first bad sector of the range.
func (l *Leaf) readPoisoned(m *mapping, set extent.Set, p []byte, off int64) (int, error) {
	lo, hi := off, off+int64(len(p))
	stop, perr := hi, error(nil)
	if bad := set.Clip(uint64(lo)/SectorSize, (uint64(hi)+SectorSize-1)/SectorSize); !bad.Empty() {
		e := firstExtent(bad)
		stop = max(lo, int64(e.Start)*SectorSize)
		perr = &PoisonError{Leaf: l.name, Bad: e}
	}
	p = p[:stop-lo]
	if !l.pageTaint {
		n, err := l.mmapRead(m, p, off)
		if err != nil {
			return n, err
		}
		return n, perr
	}
	done := 0
	for _, sp := range taintedSpans(set, lo, stop) {
		n, err := l.mmapRead(m, p[done:sp.lo-lo], lo+int64(done))
		done += n
		if err != nil {
			return done, err
		}
		n, at, err := l.directRead(p[sp.lo-lo:sp.hi-lo], sp.lo)
		l.trace("direct", sp.lo, int64(n))
		done += n
		if err != nil {
			return done, l.failure("read", at, sp.hi, err)
		}
	}
	n, err := l.mmapRead(m, p[done:], lo+int64(done))
	done += n
	if err != nil {
		return done, err
	}
	return done, perr
}

// mmapRead copies from the mapping. If the copy faults, the bytes of the
// pages before the faulting one are kept; a block device is then asked
// for the rest with O_DIRECT, which fails only the sectors that are bad.
func (l *Leaf) mmapRead(m *mapping, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	hi := off + int64(len(p))
	var n int
	var cause error
	if m.pread {
		l.trace("pread", off, int64(len(p)))
		k, err := preadFull(m.fd, p, off)
		if err == nil {
			return len(p), nil
		}
		n, cause = k, err
	} else {
		src := m.data[off:hi]
		l.trace("mmap", off, int64(len(p)))
		if _, faulted := guardedCopy(p, src); !faulted {
			return len(p), nil
		}
		n = pagedCopy(p, src, off)
	}
	if l.kind == KindFile || l.kind == KindDevdax {
		return n, l.failure("read", off+int64(n), hi, cause)
	}
	k, at, err := l.directRead(p[n:], off+int64(n))
	l.trace("direct", off+int64(n), int64(k))
	if err != nil {
		return n + k, l.failure("read", at, hi, err)
	}
	return n + k, nil
}

func (l *Leaf) write(m *mapping, p []byte, off int64) (int, error) {
	hi := off + int64(len(p))
	if ps := l.poison.Load(); l.touches(ps, off, hi) {
		return l.writePoisoned(m, p, off)
	}
	return l.mmapWrite(m, p, off)
}

// mmapWrite copies into the mapping; on a fault, as mmapRead.
func (l *Leaf) mmapWrite(m *mapping, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	hi := off + int64(len(p))
	var n int
	var cause error
	if m.pread {
		var trunc error
		if l.kind == KindFile {
			// pwrite past the end of a file would grow it, filling
			// what was cut off with zeros: look at its size first.
			now := l.refreshSize(m)
			if limit := int64(now) * SectorSize; hi > limit {
				trunc = l.truncErr(max(off, limit), hi, now)
				p = p[:max(0, limit-off)]
			}
		}
		l.trace("pwrite", off, int64(len(p)))
		k, err := pwriteFull(m.fd, p, off)
		if err == nil {
			return len(p), trunc
		}
		n, cause = k, err
	} else {
		dst := m.data[off:hi]
		l.trace("mmap", off, int64(len(p)))
		if _, faulted := guardedCopy(dst, p); !faulted {
			return len(p), nil
		}
		n = pagedCopy(dst, p, off)
	}
	if l.kind == KindFile || l.kind == KindDevdax {
		return n, l.failure("write", off+int64(n), hi, cause)
	}
	k, at, err := l.directWrite(p[n:], off+int64(n))
	l.trace("direct", off+int64(n), int64(k))
	if err != nil {
		return n + k, l.failure("write", at, hi, err)
	}
	return n + k, nil
}

// writePoisoned is a write near poison: it refuses a bad sector covered in
// part, and clears the ones covered whole.
func (l *Leaf) writePoisoned(m *mapping, p []byte, off int64) (int, error) {
	lo, hi := off, off+int64(len(p))
	l.pmu.Lock()
	cur := l.poison.Load()
	if !l.touches(cur, lo, hi) {
		l.pmu.Unlock()
		return l.mmapWrite(m, p, off)
	}
	set := *cur
	whole := set.Clip((uint64(lo)+SectorSize-1)/SectorSize, uint64(hi)/SectorSize)
	partial := set.Clip(uint64(lo)/SectorSize, (uint64(hi)+SectorSize-1)/SectorSize).Subtract(whole)
	if !partial.Empty() {
		l.pmu.Unlock()
		return 0, &PoisonError{Leaf: l.name, Bad: firstExtent(partial)}
	}
	var (
		n               int
		err             error
		added, cleared  extent.Set
		writtenSectorHi uint64
	)
	switch l.src.kind {
	case srcDevdax:
		l.pmu.Unlock()
		return 0, &PoisonError{Leaf: l.name, Bad: firstExtent(whole)}
	case srcEmulated:
		n, err = l.mmapWrite(m, p, off)
		writtenSectorHi = uint64(lo+int64(n)) / SectorSize
		cleared = whole.Clip(0, writtenSectorHi)
		if !cleared.Empty() {
			l.storePoison(set.Subtract(cleared))
		}
	case srcPmem:
		n, err = l.writeAround(m, set, p, off)
		writtenSectorHi = uint64(lo+int64(n)) / SectorSize
		if !whole.Empty() {
			// The pmem driver cleared what the O_DIRECT writes covered;
			// the kernel's list says what it managed.
			now, rerr := l.readSysfs()
			if rerr == nil {
				added, cleared = now.Subtract(set), set.Subtract(now)
				l.storePoison(now)
				if still := now.Intersect(whole.Clip(0, writtenSectorHi)); !still.Empty() && err == nil {
					err = &PoisonError{Leaf: l.name, Bad: firstExtent(still)}
				}
			} else if err == nil {
				err = leafError(l.name, rerr)
			}
		}
	}
	l.pmu.Unlock()
	l.report(added, cleared)
	return n, err
}

// writeAround writes through the mapping, except in pages holding a bad
// sector, which go to the device with O_DIRECT.
func (l *Leaf) writeAround(m *mapping, set extent.Set, p []byte, off int64) (int, error) {
	lo, hi := off, off+int64(len(p))
	done := 0
	for _, sp := range taintedSpans(set, lo, hi) {
		n, err := l.mmapWrite(m, p[done:sp.lo-lo], lo+int64(done))
		done += n
		if err != nil {
			return done, err
		}
		n, at, err := l.directWrite(p[sp.lo-lo:sp.hi-lo], sp.lo)
		l.trace("direct", sp.lo, int64(n))
		done += n
		if err != nil {
			return done, l.failure("write", at, sp.hi, err)
		}
	}
	n, err := l.mmapWrite(m, p[done:], lo+int64(done))
	return done + n, err
}

// failure makes the error for I/O of bytes up to hi that failed at byte
// at: a *PoisonError if the poison list has the sector there, a
// *TruncatedError if the leaf now ends before it (a file cut short under
// the mapping: the SIGBUS that brought us here), else a *FaultError with
// the cause.
func (l *Leaf) failure(op string, at, hi int64, cause error) error {
	sector := uint64(at) / SectorSize
	if ps := l.poison.Load(); ps != nil && ps.Contains(sector) {
		return &PoisonError{Leaf: l.name, Bad: firstExtent(ps.Clip(sector, sector+1))}
	}
	if now := l.refreshSize(l.m.Load()); sector >= now {
		return l.truncErr(at, hi, now)
	}
	return &FaultError{Leaf: l.name, Op: op, Offset: at, Err: cause}
}

// explain turns a *FaultError of a leaf whose poison the kernel keeps into
// a *PoisonError when the kernel's list, read again, has the sector: the
// kernel learnt of it after the leaf last looked. Called with no lock held.
func (l *Leaf) explain(err error) error {
	fe, ok := err.(*FaultError)
	if !ok || l.src.kind == srcEmulated {
		return err
	}
	l.pmu.Lock()
	now, rerr := l.readSysfs()
	if rerr == nil {
		l.storePoison(now)
	}
	l.pmu.Unlock()
	sector := uint64(fe.Offset) / SectorSize
	if rerr == nil && now.Contains(sector) {
		return &PoisonError{Leaf: l.name, Bad: firstExtent(now.Clip(sector, sector+1))}
	}
	return err
}

func (l *Leaf) trace(how string, off, n int64) {
	if traceIO != nil && n > 0 {
		traceIO(how, off, n)
	}
}

// span is a byte range [lo, hi) of a leaf.
type span struct{ lo, hi int64 }

// taintedSpans returns the parts of bytes [lo, hi) that lie in pages
// holding a sector of set, in order and merged.
func taintedSpans(set extent.Set, lo, hi int64) []span {
	plo, phi := lo/pageSize*pageSize, (hi+pageSize-1)/pageSize*pageSize
	var out []span
	for e := range set.Clip(uint64(plo)/SectorSize, uint64(phi)/SectorSize).Extents() {
		a := int64(e.Start) * SectorSize / pageSize * pageSize
		b := (int64(e.End())*SectorSize + pageSize - 1) / pageSize * pageSize
		a, b = max(a, lo), min(b, hi)
		if a >= b {
			continue
		}
		if n := len(out); n > 0 && out[n-1].hi >= a {
			out[n-1].hi = max(out[n-1].hi, b)
			continue
		}
		out = append(out, span{a, b})
	}
	return out
}

// firstExtent returns the first coalesced extent of a non-empty set.
func firstExtent(s extent.Set) extent.Extent {
	for e := range s.Extents() {
		return e
	}
	return extent.Extent{}
}
