package nbdleaf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
)

// ReadAt reads len(p) bytes at byte off of the leaf, with io.ReaderAt
// semantics: a read that reaches the end returns what it got and io.EOF.
// A read that touches a bad sector of the poison list reads the bytes
// before it and fails with a *PoisonError; a read the server fails with
// NBD_EIO is retried in smaller pieces (see the package documentation),
// and the sectors that keep failing join the poison list. Both match
// syscall.EIO. A lost leaf fails with a *LostError (syscall.ENXIO).
func (l *Leaf) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, leafError(l.name, fmt.Errorf("%w: read at negative offset %d", ErrRange, off))
	}
	defer l.exit()
	if err := l.enter(); err != nil {
		return 0, err
	}
	if off >= l.bytes {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > l.bytes-off {
		p, eof = p[:l.bytes-off], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	hi := off + int64(len(p))
	if ps := l.poison.Load(); touches(ps, off, hi) {
		e := firstExtent(ps.Clip(uint64(off)/SectorSize, ceilSector(hi)))
		n, err := 0, error(nil)
		if stop := int64(e.Start) * SectorSize; stop > off {
			n, err = l.readRange(p[:stop-off], off)
		}
		if err != nil {
			return n, err
		}
		return n, &PoisonError{Leaf: l.name, Bad: e}
	}
	n, err := l.readRange(p, off)
	if err == nil {
		err = eof
	}
	return n, err
}

// WriteAt writes p at byte off of the leaf, with io.WriterAt semantics (a
// write past the end writes what fits and fails with ENOSPC). Bad sectors
// p covers whole are cleared once the server has the write (and reported
// to OnPoison); a write that covers a bad sector only in part fails with a
// *PoisonError and writes nothing, as on pmem. A write the server fails
// with NBD_EIO is retried in smaller pieces; the sectors that keep
// failing become poison.
func (l *Leaf) WriteAt(p []byte, off int64) (int, error) { return l.write(p, off, false) }

// WriteAtFUA is WriteAt that returns once the data is durable: the write
// carries NBD_CMD_FLAG_FUA, or is followed by a flush on the same
// connection when the server does not offer FUA.
func (l *Leaf) WriteAtFUA(p []byte, off int64) (int, error) { return l.write(p, off, true) }

func (l *Leaf) write(p []byte, off int64, fua bool) (int, error) {
	if off < 0 {
		return 0, leafError(l.name, fmt.Errorf("%w: write at negative offset %d", ErrRange, off))
	}
	defer l.exit()
	if err := l.enter(); err != nil {
		return 0, err
	}
	var short error
	if off >= l.bytes || int64(len(p)) > l.bytes-off {
		if len(p) > 0 {
			short = leafError(l.name, fmt.Errorf("write of %d bytes at byte %d passes the end (%d bytes): %w", len(p), off, l.bytes, syscall.ENOSPC))
		}
		p = p[:max(0, min(int64(len(p)), l.bytes-off))]
	}
	if len(p) == 0 {
		return 0, short
	}
	hi := off + int64(len(p))
	hit, err := l.wholeBad(off, hi)
	if err != nil {
		return 0, err
	}
	n, failed, err := l.writeRange(p, off, fua)
	switch {
	case err == nil:
		l.clearBad(hit)
		err = short
	case !hit.Empty():
		// The pieces that went through cleared what they covered.
		l.clearBad(hit.Subtract(failed))
	}
	return n, err
}

// wholeBad returns the bad sectors in [lo, hi), or a *PoisonError if the
// range covers one only in part.
func (l *Leaf) wholeBad(lo, hi int64) (extent.Set, error) {
	ps := l.poison.Load()
	if !touches(ps, lo, hi) {
		return extent.Set{}, nil
	}
	first, last := uint64(lo)/SectorSize, ceilSector(hi)
	hit := ps.Clip(first, last)
	for _, s := range []uint64{first, last - 1} {
		part := (s == first && lo%SectorSize != 0) || (s == last-1 && hi%SectorSize != 0)
		if part && hit.Contains(s) {
			return extent.Set{}, &PoisonError{Leaf: l.name, Bad: extent.Extent{Start: s, Len: 1}}
		}
	}
	return hit, nil
}

// readRange reads from the server, retrying a media error in pieces.
func (l *Leaf) readRange(p []byte, off int64) (int, error) {
	n, err := l.move(opRead, p, off, false)
	if err == nil || !isMedia(err) {
		return n, l.wrap(err)
	}
	n, _, err = l.settle(opRead, p, off, false, n, err)
	return n, err
}

// writeRange writes to the server, retrying a media error in pieces. On
// failure it also returns the sectors that may not hold p: the bad ones
// when every other piece was written, else all of the range.
func (l *Leaf) writeRange(p []byte, off int64, fua bool) (int, extent.Set, error) {
	n, err := l.move(opWrite, p, off, fua)
	if err == nil {
		return n, extent.Set{}, nil
	}
	all := extent.Of(sectorSpan(off, off+int64(len(p))))
	if !isMedia(err) {
		return n, all, l.wrap(err)
	}
	return l.settle(opWrite, p, off, fua, n, err)
}

// settle narrows a media error of [off, off+len(p)) (n good bytes first)
// to the sectors that keep failing, records them and says how the I/O
// ends, with the sectors it may not have moved.
func (l *Leaf) settle(o op, p []byte, off int64, fua bool, n int, cause error) (int, extent.Set, error) {
	bad, n, err := l.narrow(o, p, off, fua, n)
	l.addBad(bad)
	failed := bad
	if err != nil {
		failed = failed.Union(extent.Of(sectorSpan(off+int64(n), off+int64(len(p)))))
	}
	switch {
	case !bad.Empty():
		// narrow stops counting good bytes at the first bad block.
		return n, failed, &PoisonError{Leaf: l.name, Bad: firstExtent(bad)}
	case err != nil:
		return n, failed, l.wrap(err)
	}
	l.s.log.Warn("nbdleaf: a media error did not come back when retried; not recorded",
		"leaf", l.name, "op", o.String(), "offset", off, "length", len(p), "err", cause)
	return len(p), failed, nil
}

// sectorSpan is the sectors that bytes [lo, hi) touch.
func sectorSpan(lo, hi int64) extent.Extent {
	s := uint64(lo) / SectorSize
	return extent.Extent{Start: s, Len: ceilSector(hi) - s}
}

func (l *Leaf) wrap(err error) error {
	if err == nil {
		return nil
	}
	var le *LostError
	if errors.As(err, &le) {
		return err
	}
	return leafError(l.name, err)
}

// isMedia reports whether the server failed a request with NBD_EIO.
func isMedia(err error) bool {
	var ne *nbd.Error
	return errors.As(err, &ne) && ne.Errno == nbd.EIO
}

// Sync makes every write that has returned durable: NBD_CMD_FLUSH on each
// connection that has taken writes since its last flush (on one of them
// when the server says a flush covers all its connections). If a
// connection broke while it held writes no flush had covered, they may be
// lost with the server's cache: Sync reports ErrUnflushed (syscall.EIO)
// once, as fsync reports a writeback error. A server that offers no
// flush is taken to write through.
func (l *Leaf) Sync() error {
	l.inflight.Add(1)
	defer l.exit()
	if l.closed.Load() {
		return leafError(l.name, ErrClosed)
	}
	var dirty []*conn
	multi := false
	if p := l.live.Load(); p != nil {
		for _, cn := range *p {
			if cn.dirty.Swap(false) {
				dirty = append(dirty, cn)
				multi = multi || cn.info.Flags&nbd.FlagCanMultiConn != 0
			}
		}
	}
	if multi {
		dirty = dirty[:1]
	}
	var errs []error
	for _, cn := range dirty {
		if cn.info.Flags&nbd.FlagSendFlush == 0 {
			continue
		}
		cn.begin() // the watchdog drops a connection that does not answer
		err := cn.c.Flush(l.ctx)
		cn.end()
		if err != nil {
			cn.dirty.Store(true) // still to flush (or, if it broke, unflushed)
			errs = append(errs, err)
		}
	}
	if l.unflush.Swap(false) {
		errs = append(errs, ErrUnflushed)
	}
	if err := errors.Join(errs...); err != nil {
		return leafError(l.name, err)
	}
	return nil
}

// WriteZeroes makes [off, off+length) (bytes) read as zeroes with
// NBD_CMD_WRITE_ZEROES, the ends that are not aligned to the server's
// minimum block with a write. Poison is handled as a write of zeroes
// would handle it. It fails with ErrUnsupported (EOPNOTSUPP) if the
// server does not offer WRITE_ZEROES.
func (l *Leaf) WriteZeroes(off, length int64) error {
	if off < 0 || length < 0 || off > l.bytes || length > l.bytes-off {
		return leafError(l.name, fmt.Errorf("%w: zeroes [%d, +%d) of %d bytes", ErrRange, off, length, l.bytes))
	}
	defer l.exit()
	if err := l.enter(); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	hi := off + length
	hit, err := l.wholeBad(off, hi)
	if err != nil {
		return err
	}
	_, err = l.request(func(ctx context.Context, cn *conn) (int, error) {
		if cn.info.Flags&nbd.FlagSendWriteZeroes == 0 {
			return 0, ErrUnsupported
		}
		g := int64(max(cn.info.BlockSizes.Minimum, 1))
		lo, end := alignUp(off, g), alignDown(hi, g)
		if lo >= end {
			return 0, l.zeroWrite(ctx, cn, off, hi)
		}
		if err := l.zeroWrite(ctx, cn, off, lo); err != nil {
			return 0, err
		}
		if g > 1 {
			l.rmw.RLock() // not across zeroWrite, which may take it exclusively
		}
		err := cn.c.WriteZeroes(ctx, lo, end-lo, 0)
		if g > 1 {
			l.rmw.RUnlock()
		}
		if err != nil {
			return 0, err
		}
		cn.dirty.Store(true)
		return 0, l.zeroWrite(ctx, cn, end, hi)
	})
	if isMedia(err) {
		// Write the zeroes instead, which narrows a failure to sectors.
		err = nil
		zero := make([]byte, min(length, 1<<20))
		for at := off; at < hi && err == nil; at += int64(len(zero)) {
			_, _, err = l.writeRange(zero[:min(int64(len(zero)), hi-at)], at, false)
		}
		if err != nil {
			return err
		}
	} else if err != nil {
		return l.wrap(err)
	}
	l.clearBad(hit)
	return nil
}

func (l *Leaf) zeroWrite(ctx context.Context, cn *conn, lo, hi int64) error {
	if lo >= hi {
		return nil
	}
	_, err := l.moveOn(ctx, cn, opWrite, make([]byte, hi-lo), lo, false)
	return err
}

// Discard tells the server [off, off+length) (bytes) is no longer needed
// (NBD_CMD_TRIM, on the part aligned to its minimum block): what it reads
// afterwards is undefined. Poison is left as it is. It fails with
// ErrUnsupported if the server does not offer TRIM.
func (l *Leaf) Discard(off, length int64) error {
	if off < 0 || length < 0 || off > l.bytes || length > l.bytes-off {
		return leafError(l.name, fmt.Errorf("%w: discard [%d, +%d) of %d bytes", ErrRange, off, length, l.bytes))
	}
	defer l.exit()
	if err := l.enter(); err != nil {
		return err
	}
	_, err := l.request(func(ctx context.Context, cn *conn) (int, error) {
		if cn.info.Flags&nbd.FlagSendTrim == 0 {
			return 0, ErrUnsupported
		}
		g := int64(max(cn.info.BlockSizes.Minimum, 1))
		lo, end := alignUp(off, g), alignDown(off+length, g)
		if lo >= end {
			return 0, nil
		}
		if err := cn.c.Trim(ctx, lo, end-lo, false); err != nil {
			return 0, err
		}
		cn.dirty.Store(true)
		return 0, nil
	})
	return l.wrap(err)
}

// op is a request's direction.
type op uint8

const (
	opRead op = iota
	opWrite
)

func (o op) String() string {
	if o == opRead {
		return "read"
	}
	return "write"
}

// move runs a read or write on some connection.
func (l *Leaf) move(o op, p []byte, off int64, fua bool) (int, error) {
	return l.request(func(ctx context.Context, cn *conn) (int, error) {
		return l.moveOn(ctx, cn, o, p, off, fua)
	})
}

// request runs do on a connection, on another one if that connection
// breaks (or the watchdog drops it), until the leaf is lost or the grace
// period has passed since the first break.
func (l *Leaf) request(do func(ctx context.Context, cn *conn) (int, error)) (int, error) {
	var first time.Time
	for {
		cn, err := l.pick()
		if err != nil {
			return 0, err
		}
		cn.begin()
		n, err := do(l.ctx, cn)
		cn.end()
		switch {
		case err == nil:
			return n, nil
		case l.ctx.Err() != nil:
			return n, leafError(l.name, ErrClosed)
		case !broken(err):
			return n, err
		}
		l.evict(cn, err) // before its slot notices, so that pick does not take it again
		if first.IsZero() {
			first = time.Now()
		} else if time.Since(first) > l.s.grace {
			return n, err
		}
	}
}

// broken reports whether err says the connection is gone (or going), so
// that the request should go again on another.
func broken(err error) bool {
	return errors.Is(err, nbd.ErrClosed) || errors.Is(err, syscall.ESHUTDOWN)
}

// evict takes a connection that left a request unanswered out of use.
func (l *Leaf) evict(cn *conn, why error) {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s != nil {
		l.retire(s, cn, why)
	}
	l.closeAsync(cn, 0)
}

// moveOn runs a read or write on cn, through a bounce buffer when it is
// not aligned to the server's minimum block size.
func (l *Leaf) moveOn(ctx context.Context, cn *conn, o op, p []byte, off int64, fua bool) (int, error) {
	m := int64(cn.info.BlockSizes.Minimum)
	aligned := m <= 1 || (off%m == 0 && int64(len(p))%m == 0)
	switch {
	case o == opRead && aligned:
		return cn.c.ReadAt(ctx, p, off)
	case o == opRead:
		return bounceRead(ctx, cn, p, off, m)
	case aligned:
		if m > 1 {
			l.rmw.RLock()
			defer l.rmw.RUnlock()
		}
		return writeOn(ctx, cn, p, off, fua)
	}
	// Read, modify and write the partial blocks, excluding other writes
	// (which could land between the read and the write and be undone).
	l.rmw.Lock()
	defer l.rmw.Unlock()
	lo, hi := alignDown(off, m), min(alignUp(off+int64(len(p)), m), cn.info.Size)
	buf := make([]byte, hi-lo)
	if off != lo {
		if _, err := cn.c.ReadAt(ctx, buf[:m], lo); err != nil {
			return 0, err
		}
	}
	if end := off + int64(len(p)); end != hi && (hi-m > lo || off == lo) {
		if _, err := cn.c.ReadAt(ctx, buf[hi-m-lo:], hi-m); err != nil {
			return 0, err
		}
	}
	copy(buf[off-lo:], p)
	n, err := writeOn(ctx, cn, buf, lo, fua)
	return int(min(max(0, lo+int64(n)-off), int64(len(p)))), err
}

func bounceRead(ctx context.Context, cn *conn, p []byte, off, m int64) (int, error) {
	lo, hi := alignDown(off, m), min(alignUp(off+int64(len(p)), m), cn.info.Size)
	buf := make([]byte, hi-lo)
	n, err := cn.c.ReadAt(ctx, buf, lo)
	got := int(min(max(0, lo+int64(n)-off), int64(len(p))))
	copy(p[:got], buf[off-lo:])
	return got, err
}

// writeOn writes p at off on cn, durably if fua (by a flush on the same
// connection when the server has no FUA).
func writeOn(ctx context.Context, cn *conn, p []byte, off int64, fua bool) (int, error) {
	f := cn.info.Flags
	if f&nbd.FlagReadOnly != 0 {
		return 0, ErrReadOnly
	}
	native := fua && f&nbd.FlagSendFUA != 0
	n, err := cn.c.WriteAt(ctx, p, off, native)
	if err != nil {
		return n, err
	}
	switch {
	case native:
	case fua && f&nbd.FlagSendFlush != 0:
		// The flush covers every write completed on cn before it is
		// sent; one completing later marks cn dirty again.
		cn.dirty.Store(false)
		if err := cn.c.Flush(ctx); err != nil {
			cn.dirty.Store(true)
			return 0, err
		}
	default:
		cn.dirty.Store(true)
	}
	return n, nil
}

func alignDown(x, m int64) int64 { return x / m * m }
func alignUp(x, m int64) int64   { return (x + m - 1) / m * m }
func ceilSector(b int64) uint64  { return (uint64(b) + SectorSize - 1) / SectorSize }
