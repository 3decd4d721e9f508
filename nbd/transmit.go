package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The server's transmission phase: reading requests, checking them as the
// spec's "Request types" and "Error values" sections say, and serving them
// on the backend.

// request is one request of the transmission phase and, once served, the
// reply to it.
type request struct {
	cmd    uint16
	flags  uint16
	cookie uint64
	off    uint64
	length uint32

	buf  *[]byte // pooled buffer: write payload, read data or block status chunks
	data []byte  // the part of buf in use
	cost int     // bytes held in the connection's budget

	// The outcome.
	n      int // good bytes at the start of a read's data
	errno  Errno
	errOff uint64 // with hasOff: the failing byte of the export
	hasOff bool

	hdr [128]byte // reply headers
	ext []Extent  // block status scratch
}

var requestPool = sync.Pool{New: func() any { return new(request) }}

func getRequest() *request {
	r := requestPool.Get().(*request)
	ext := r.ext[:0]
	*r = request{ext: ext}
	return r
}

func putRequest(r *request) {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf, r.data = nil, nil
	}
	if cap(r.ext) > 4096 {
		r.ext = nil
	}
	requestPool.Put(r)
}

// maxSkip bounds the payload of a refused write that is read and thrown
// away to stay in step; a longer one ends the session.
const maxSkip = 2 * DefaultMaxPayload

// transmit runs the transmission phase until the client disconnects, the
// connection fails or a shutdown ends it.
func (sc *serverConn) transmit() error {
	sc.budget.init(sc.srv.maxInFlight(), sc.srv.maxInFlightBytes())
	sc.maxWorkers = sc.srv.maxInFlight()
	if p := sc.exp.MaxParallel; p > 0 && p < sc.maxWorkers {
		sc.maxWorkers = p
	}
	sc.work = make(chan *request)

	err := sc.readRequests()

	sc.inflight.Wait()
	close(sc.work)
	if sc.dead.Load() && err == nil {
		err = errors.New("nbd: connection lost while sending replies")
	}
	return err
}

func (sc *serverConn) readRequests() error {
	var h [requestHeaderLen]byte
	for {
		if _, err := io.ReadFull(sc.br, h[:]); err != nil {
			if sc.shuttingDown() || sc.dead.Load() {
				return nil
			}
			if err == io.EOF {
				return fmt.Errorf("client closed the connection without NBD_CMD_DISC")
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		if m := binary.BigEndian.Uint32(h[0:]); m != requestMagic {
			return fmt.Errorf("%w: request magic %#x", ErrProtocol, m)
		}
		r := getRequest()
		r.flags = binary.BigEndian.Uint16(h[4:])
		r.cmd = binary.BigEndian.Uint16(h[6:])
		r.cookie = binary.BigEndian.Uint64(h[8:])
		r.off = binary.BigEndian.Uint64(h[16:])
		r.length = binary.BigEndian.Uint32(h[24:])
		if r.cmd == cmdDisc {
			putRequest(r)
			return nil
		}
		errno := sc.check(r)
		if errno == 0 && (sc.shuttingDown() || sc.gone.Load()) {
			errno = ESHUTDOWN
		}
		if r.cmd == cmdWrite && errno != 0 {
			if r.length > maxSkip {
				putRequest(r)
				return fmt.Errorf("%w: refused write of %d bytes is too long to skip", ErrProtocol, r.length)
			}
			if _, err := io.CopyN(io.Discard, sc.br, int64(r.length)); err != nil {
				putRequest(r)
				return fmt.Errorf("skipping a refused write: %w", err)
			}
		}
		if errno == 0 && (r.cmd == cmdRead || r.cmd == cmdWrite) {
			r.cost = int(r.length)
		}
		if !sc.budget.acquire(r.cost) {
			putRequest(r)
			return nil
		}
		sc.inflight.Add(1)
		if errno != 0 {
			r.errno = errno
			sc.queue(r)
			continue
		}
		if r.cmd == cmdWrite {
			r.buf = getBuf(int(r.length))
			r.data = (*r.buf)[:r.length]
			if _, err := io.ReadFull(sc.br, r.data); err != nil {
				sc.finish(r)
				return fmt.Errorf("reading a write's data: %w", err)
			}
		}
		sc.dispatch(r)
	}
}

// dispatch hands r to an idle worker, starting one if none is idle and
// the connection has fewer than its limit (Export.MaxParallel, at most
// MaxInFlight); otherwise it waits for one.
func (sc *serverConn) dispatch(r *request) {
	select {
	case sc.work <- r:
		return
	default:
	}
	if sc.workers < sc.maxWorkers {
		sc.workers++
		go sc.worker()
	}
	sc.work <- r
}

func (sc *serverConn) worker() {
	for r := range sc.work {
		sc.serveRequest(r)
		sc.queue(r)
	}
}

// check validates a request before anything is done for it; nonzero is
// the error to answer with.
func (sc *serverConn) check(r *request) Errno {
	f := sc.flags
	switch r.cmd {
	case cmdRead, cmdWrite, cmdFlush, cmdTrim, cmdWriteZeroes, cmdBlockStatus:
	default:
		return EINVAL // unknown commands, and NBD_CMD_CACHE, which is not offered
	}
	fl := r.flags
	switch {
	case fl&^cmdFlagsKnown != 0,
		fl&(cmdFlagNoHole|cmdFlagFastZero) != 0 && r.cmd != cmdWriteZeroes,
		fl&cmdFlagDF != 0 && (r.cmd != cmdRead || f&FlagSendDF == 0),
		fl&cmdFlagReqOne != 0 && r.cmd != cmdBlockStatus,
		fl&cmdFlagFUA != 0 && f&FlagSendFUA == 0,
		fl&cmdFlagFastZero != 0 && f&FlagSendFastZero == 0:
		return EINVAL
	}
	switch r.cmd {
	case cmdWrite, cmdTrim, cmdWriteZeroes:
		if f&FlagReadOnly != 0 {
			return EPERM
		}
	}
	switch r.cmd {
	case cmdFlush:
		if f&FlagSendFlush == 0 || r.off != 0 || r.length != 0 {
			return EINVAL
		}
		return 0
	case cmdTrim:
		if f&FlagSendTrim == 0 {
			return EINVAL
		}
	case cmdWriteZeroes:
		if f&FlagSendWriteZeroes == 0 {
			return EINVAL
		}
	case cmdBlockStatus:
		if !sc.structured || len(sc.meta) == 0 || r.length == 0 {
			return EINVAL
		}
	}
	size := uint64(sc.exp.Size)
	if r.off > size || uint64(r.length) > size-r.off {
		if r.cmd == cmdWrite || r.cmd == cmdWriteZeroes {
			return ENOSPC
		}
		return EINVAL
	}
	if m := uint64(sc.exp.BlockSizes.Minimum); r.off%m != 0 || uint64(r.length)%m != 0 {
		return EINVAL
	}
	if (r.cmd == cmdRead || r.cmd == cmdWrite) && r.length > sc.exp.BlockSizes.MaxPayload {
		if r.cmd == cmdRead && sc.structured {
			return EOVERFLOW // the spec: a large read may be refused so
		}
		return EINVAL
	}
	return 0
}

// serveRequest runs a checked request on the backend and records the
// outcome in it.
func (sc *serverConn) serveRequest(r *request) {
	defer func() {
		if p := recover(); p != nil {
			sc.srv.logger().Error("nbd: backend panicked", "export", sc.exp.Name, "panic", p)
			r.errno, r.hasOff, r.n = EIO, false, 0
		}
	}()
	b := sc.exp.Backend
	ctx := sc.ctx
	off := int64(r.off)
	length := int64(r.length)
	fua := r.flags&cmdFlagFUA != 0
	var err error
	switch r.cmd {
	case cmdRead:
		r.buf = getBuf(int(r.length))
		r.data = (*r.buf)[:r.length]
		var n int
		n, err = b.ReadAt(ctx, r.data, off)
		if n < 0 || n > len(r.data) {
			n, err = 0, fmt.Errorf("nbd: backend read returned %d of %d bytes", n, len(r.data))
		}
		if err == io.EOF && n == len(r.data) {
			err = nil
		}
		if err == nil && n < len(r.data) {
			err = io.ErrUnexpectedEOF
		}
		r.n = n
		if err != nil {
			r.fail(err, uint64(off)+uint64(n), true)
		}
	case cmdWrite:
		var n int
		n, err = b.WriteAt(ctx, r.data, off, fua)
		if n < 0 || n > len(r.data) {
			n = 0
		}
		if err == nil && n < len(r.data) {
			err = io.ErrShortWrite
		}
		if err != nil {
			r.fail(err, uint64(off)+uint64(n), true)
		}
	case cmdFlush:
		if err = b.Flush(ctx); err != nil {
			r.fail(err, 0, false)
		}
	case cmdTrim:
		if length > 0 {
			if err = b.Trim(ctx, off, length, fua); err != nil {
				r.fail(err, 0, false)
			}
		}
	case cmdWriteZeroes:
		var zf ZeroFlags
		if fua {
			zf |= ZeroFUA
		}
		if r.flags&cmdFlagNoHole != 0 {
			zf |= ZeroNoHole
		}
		if r.flags&cmdFlagFastZero != 0 {
			zf |= ZeroFast
		}
		if length > 0 {
			if err = b.WriteZeroes(ctx, off, length, zf); err != nil {
				r.fail(err, 0, false)
			}
		}
	case cmdBlockStatus:
		err = sc.blockStatus(r)
	}
	if err != nil {
		sc.srv.logger().Debug("nbd: request failed", "export", sc.exp.Name, "cmd", r.cmd,
			"offset", r.off, "length", r.length, "err", err)
		if r.errno == ESHUTDOWN {
			sc.gone.Store(true)
		}
	}
}

// fail records err as the outcome of r. at is the failing byte when
// known is set (reads and writes say it by their count); otherwise an
// OffsetError inside the request gives it.
func (r *request) fail(err error, at uint64, known bool) {
	r.errno = errnoOf(err, r.flags)
	if !known {
		var oe *OffsetError
		if errors.As(err, &oe) && oe.Offset >= 0 {
			at, known = uint64(oe.Offset), true
		}
	}
	end := r.off + uint64(r.length)
	if known && at >= r.off && at < end {
		r.errOff, r.hasOff = at, true
	} else {
		r.hasOff = false
	}
}

// blockStatus asks the backend about every selected context and builds
// the reply chunks in r.data.
func (sc *serverConn) blockStatus(r *request) error {
	b := sc.exp.Backend
	reqOne := r.flags&cmdFlagReqOne != 0
	r.buf = getBuf(64 << 10)
	out := (*r.buf)[:0]
	for i, m := range sc.meta {
		ext, err := b.BlockStatus(sc.ctx, m.name, int64(r.off), int64(r.length), r.ext[:0])
		if cap(ext) > cap(r.ext) {
			r.ext = ext[:0]
		}
		if err != nil {
			r.fail(err, 0, false)
			return err
		}
		flags := uint16(0)
		if i == len(sc.meta)-1 {
			flags = replyFlagDone
		}
		start := len(out)
		out = appendChunkHeader(out, flags, replyTypeBlockStatus, r.cookie, 0)
		out = binary.BigEndian.AppendUint32(out, m.id)
		out, err = appendDescriptors(out, r.off, uint64(r.length), reqOne, ext)
		if err != nil {
			err = fmt.Errorf("nbd: block status of %s: %w", m.name, err)
			r.fail(err, 0, false)
			r.errno = EIO
			return err
		}
		binary.BigEndian.PutUint32(out[start+16:], uint32(len(out)-start-structuredReplyHeaderLen))
	}
	if cap(out) > cap(*r.buf) {
		// The chunks outgrew the pooled buffer; the grown one is not
		// pooled (its size class is unknown), the pooled one goes back.
		putBuf(r.buf)
		r.buf = nil
	}
	r.data = out
	return nil
}

// appendDescriptors appends the block descriptors of [off, off+length)
// from ext (the extents with nonzero flags, in order): gaps get flags 0,
// runs of equal flags are merged, extents are clipped to the range. With
// reqOne only the first descriptor is sent; otherwise at most
// maxDescriptors (the spec lets a reply cover less than asked).
func appendDescriptors(b []byte, off, length uint64, reqOne bool, ext []Extent) ([]byte, error) {
	end := off + length
	limit := maxDescriptors
	if reqOne {
		limit = 1
	}
	count := 0
	cur, curLen, curFlags := off, uint64(0), uint32(0)
	emit := func(n uint64, flags uint32) bool {
		if curLen > 0 && flags == curFlags {
			curLen += n
			return true
		}
		if curLen > 0 {
			b = binary.BigEndian.AppendUint32(b, uint32(curLen))
			b = binary.BigEndian.AppendUint32(b, curFlags)
			count++
			if count == limit {
				return false
			}
		}
		curLen, curFlags = n, flags
		return true
	}
	var prevEnd uint64
	for i, e := range ext {
		if e.Length <= 0 {
			continue
		}
		if e.Offset < 0 || e.Offset > (1<<63-1)-e.Length {
			return b, fmt.Errorf("extent %d: bad range [%d, +%d)", i, e.Offset, e.Length)
		}
		s, t := uint64(e.Offset), uint64(e.Offset+e.Length)
		if s < prevEnd {
			return b, fmt.Errorf("extent %d at %d overlaps or precedes the one before", i, s)
		}
		prevEnd = t
		if t <= cur {
			continue
		}
		if s >= end {
			break
		}
		s, t = max(s, cur), min(t, end)
		if s > cur && !emit(s-cur, 0) {
			return b, nil
		}
		if !emit(t-s, e.Flags) {
			return b, nil
		}
		cur = t
	}
	if cur < end && !emit(end-cur, 0) {
		return b, nil
	}
	if curLen > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(curLen))
		b = binary.BigEndian.AppendUint32(b, curFlags)
	}
	return b, nil
}
