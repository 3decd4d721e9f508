package nbd

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
)

// The client's requests: each is a call, registered under a fresh cookie,
// sent under the write lock and completed by the reader when its reply
// (the chunk flagged NBD_REPLY_FLAG_DONE, or the simple reply) arrives.

type call struct {
	c      *Client
	cmd    uint16
	flags  uint16
	off    uint64
	length uint32
	buf    []byte // a read's destination, len(buf) == length

	mu        sync.Mutex // held by the reader while it fills buf
	abandoned bool       // the caller went away: discard what comes
	finished  bool       // finish is sending the result on done

	// The reply so far (the reader's).
	spans  []span64 // data chunks received, sorted, disjoint
	failed bool
	errno  Errno
	msg    string
	errOff uint64 // the least error offset, if hasOff
	hasOff bool
	noOff  bool // an error came without an offset
	ext    map[string][]Extent

	done chan error
	hdr  [requestHeaderLen]byte
}

type span64 struct{ off, end uint64 }

var callPool = sync.Pool{New: func() any { return &call{done: make(chan error, 1)} }}

func (c *Client) newCall(cmd, flags uint16, off uint64, length uint32, buf []byte) *call {
	cl := callPool.Get().(*call)
	done, spans := cl.done, cl.spans[:0]
	*cl = call{c: c, cmd: cmd, flags: flags, off: off, length: length, buf: buf, done: done, spans: spans}
	return cl
}

func putRequestHeader(h []byte, flags, cmd uint16, cookie, off uint64, length uint32) {
	binary.BigEndian.PutUint32(h[0:], requestMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
}

// start sends cl (with payload for a write). After a nil return the call
// will be finished exactly once.
func (c *Client) start(ctx context.Context, cl *call, payload []byte) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.slots
		if err := c.Err(); err != nil {
			return err
		}
		return ErrClosed
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = cl
	c.mu.Unlock()
	putRequestHeader(cl.hdr[:], cl.flags, cl.cmd, cookie, cl.off, cl.length)
	c.wmu.Lock()
	var err error
	if payload == nil {
		_, err = c.conn.Write(cl.hdr[:])
	} else {
		vec := net.Buffers{cl.hdr[:], payload}
		_, err = vec.WriteTo(c.conn)
	}
	c.wmu.Unlock()
	if err != nil {
		c.die(fmt.Errorf("%w: sending a request: %w", ErrClosed, err))
	}
	return nil
}

// finish completes cl with err (the reader's or die's).
func (cl *call) finish(err error) {
	c := cl.c
	cl.mu.Lock()
	ab := cl.abandoned
	cl.finished = !ab
	cl.mu.Unlock()
	<-c.slots
	if ab {
		callPool.Put(cl)
		return
	}
	cl.done <- err
}

// wait waits for cl's result. If ctx ends first the call is abandoned:
// whatever still arrives for it is discarded, never written to the
// caller's buffer after wait returns, and the call is the reader's from
// then on (mine is false): finish returns it to the pool, where another
// request may take it at once, so the caller must not touch it again,
// not even to release it.
func (cl *call) wait(ctx context.Context) (mine bool, err error) {
	select {
	case err := <-cl.done:
		return true, err
	case <-ctx.Done():
	}
	cl.mu.Lock()
	if cl.finished {
		// It finished before it could be abandoned: its result is on
		// its way, and finish did not pool it.
		cl.mu.Unlock()
		return true, <-cl.done
	}
	cl.abandoned = true
	cl.mu.Unlock()
	return false, ctx.Err()
}

// release returns a call whose result was taken to the pool.
func (cl *call) release() {
	cl.mu.Lock()
	ab := cl.abandoned
	cl.mu.Unlock()
	if !ab {
		cl.buf = nil
		cl.ext = nil
		callPool.Put(cl)
	}
}

// goodPrefix is the number of bytes from the start of a read that came
// in data chunks before any failure: what the caller may trust.
func (cl *call) goodPrefix() int {
	if cl.noOff {
		return 0
	}
	var n uint64
	if len(cl.spans) > 0 && cl.spans[0].off == cl.off {
		n = cl.spans[0].end - cl.off
	}
	if cl.hasOff {
		n = min(n, cl.errOff-cl.off)
	}
	return int(n)
}

var opNames = map[uint16]string{
	cmdRead: "read", cmdWrite: "write", cmdFlush: "flush", cmdTrim: "trim",
	cmdWriteZeroes: "write zeroes", cmdBlockStatus: "block status", cmdCache: "cache",
}

// result is the error of a finished call, nil for success.
func (cl *call) result() error {
	if !cl.failed {
		return nil
	}
	e := cl.errno
	switch e {
	case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN:
	default:
		e = EINVAL // the spec: treat an unexpected error value as EINVAL
	}
	return &Error{Op: opNames[cl.cmd], Errno: e, Message: cl.msg, Offset: int64(cl.errOff), HasOffset: cl.hasOff}
}

func (c *Client) checkRange(off, length int64) error {
	if off < 0 || length < 0 || off > c.info.Size || length > c.info.Size-off {
		return fmt.Errorf("%w: [%d, +%d) of %d bytes", ErrRange, off, length, c.info.Size)
	}
	if m := int64(c.info.BlockSizes.Minimum); off%m != 0 || length%m != 0 {
		return fmt.Errorf("%w: [%d, +%d) is not aligned to the minimum block size %d", ErrRange, off, length, m)
	}
	return nil
}

// ReadAt reads len(p) bytes at off, as io.ReaderAt: n bytes at the start
// of p are good. A read longer than the maximum payload goes as several
// requests at once. A media error of the server matches syscall.EIO and,
// with structured replies, is an *Error with the failing offset.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := c.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	return c.pieces(ctx, cmdRead, 0, p, off)
}

// WriteAt writes p at off; with fua it is durable when WriteAt returns
// (the export must offer FUA: Info().Flags&FlagSendFUA).
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64, fua bool) (int, error) {
	if c.info.Flags&FlagReadOnly != 0 {
		return 0, ErrReadOnly
	}
	var flags uint16
	if fua {
		if c.info.Flags&FlagSendFUA == 0 {
			return 0, fmt.Errorf("nbd: FUA: %w", ErrUnsupported)
		}
		flags = cmdFlagFUA
	}
	if err := c.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	return c.pieces(ctx, cmdWrite, flags, p, off)
}

// pieces runs a read or write of p at off in requests of at most the
// maximum payload, all in flight at once.
func (c *Client) pieces(ctx context.Context, cmd, flags uint16, p []byte, off int64) (int, error) {
	step := int(c.info.BlockSizes.MaxPayload)
	step -= step % int(c.info.BlockSizes.Minimum)
	if len(p) <= step {
		return c.one(ctx, cmd, flags, p, off)
	}
	var calls []*call
	var startErr error
	for i := 0; i < len(p); i += step {
		q := p[i:min(i+step, len(p))]
		cl := c.newCall(cmd, flags, uint64(off)+uint64(i), uint32(len(q)), nil)
		var payload []byte
		if cmd == cmdRead {
			cl.buf = q
		} else {
			payload = q
		}
		if startErr = c.start(ctx, cl, payload); startErr != nil {
			callPool.Put(cl)
			break
		}
		calls = append(calls, cl)
	}
	n, failed := 0, false
	var first error
	for _, cl := range calls {
		mine, err := cl.wait(ctx)
		if err == nil {
			err = cl.result()
		}
		if !failed {
			if err != nil {
				failed, first = true, err
				if cmd == cmdRead && mine {
					n += cl.goodPrefix()
				}
			} else {
				n += int(cl.length)
			}
		}
		if mine {
			cl.release()
		}
	}
	if !failed && startErr != nil {
		return n, startErr
	}
	return n, first
}

func (c *Client) one(ctx context.Context, cmd, flags uint16, p []byte, off int64) (int, error) {
	cl := c.newCall(cmd, flags, uint64(off), uint32(len(p)), nil)
	var payload []byte
	if cmd == cmdRead {
		cl.buf = p
	} else {
		payload = p
	}
	if err := c.start(ctx, cl, payload); err != nil {
		callPool.Put(cl)
		return 0, err
	}
	mine, err := cl.wait(ctx)
	if !mine {
		return 0, err
	}
	n := len(p)
	if err == nil {
		if err = cl.result(); err != nil {
			n = 0
			if cmd == cmdRead {
				n = cl.goodPrefix()
			}
		}
	} else {
		n = 0
	}
	cl.release()
	return n, err
}

// simple runs a request without payload or data.
func (c *Client) simple(ctx context.Context, cmd, flags uint16, off uint64, length uint32) error {
	cl := c.newCall(cmd, flags, off, length, nil)
	if err := c.start(ctx, cl, nil); err != nil {
		callPool.Put(cl)
		return err
	}
	mine, err := cl.wait(ctx)
	if !mine {
		return err
	}
	if err == nil {
		err = cl.result()
	}
	cl.release()
	return err
}

// Flush makes every write that has returned durable (NBD_CMD_FLUSH).
func (c *Client) Flush(ctx context.Context) error {
	if c.info.Flags&FlagSendFlush == 0 {
		return fmt.Errorf("nbd: flush: %w", ErrUnsupported)
	}
	return c.simple(ctx, cmdFlush, 0, 0, 0)
}

// maxEffect bounds the length of one trim or write zeroes request.
const maxEffect = 1 << 30

// Trim tells the server [off, off+length) is no longer needed.
func (c *Client) Trim(ctx context.Context, off, length int64, fua bool) error {
	if c.info.Flags&FlagReadOnly != 0 {
		return ErrReadOnly
	}
	if c.info.Flags&FlagSendTrim == 0 {
		return fmt.Errorf("nbd: trim: %w", ErrUnsupported)
	}
	var flags uint16
	if fua {
		if c.info.Flags&FlagSendFUA == 0 {
			return fmt.Errorf("nbd: FUA: %w", ErrUnsupported)
		}
		flags = cmdFlagFUA
	}
	return c.effect(ctx, cmdTrim, flags, off, length)
}

// WriteZeroes makes [off, off+length) read as zeroes (flags as for
// Backend.WriteZeroes; ZeroFast needs FlagSendFastZero and fails with
// ENOTSUP when the server cannot be fast).
func (c *Client) WriteZeroes(ctx context.Context, off, length int64, zf ZeroFlags) error {
	f := c.info.Flags
	if f&FlagReadOnly != 0 {
		return ErrReadOnly
	}
	if f&FlagSendWriteZeroes == 0 {
		return fmt.Errorf("nbd: write zeroes: %w", ErrUnsupported)
	}
	var flags uint16
	if zf&ZeroFUA != 0 {
		if f&FlagSendFUA == 0 {
			return fmt.Errorf("nbd: FUA: %w", ErrUnsupported)
		}
		flags |= cmdFlagFUA
	}
	if zf&ZeroNoHole != 0 {
		flags |= cmdFlagNoHole
	}
	if zf&ZeroFast != 0 {
		if f&FlagSendFastZero == 0 {
			return fmt.Errorf("nbd: fast zero: %w", ErrUnsupported)
		}
		flags |= cmdFlagFastZero
	}
	return c.effect(ctx, cmdWriteZeroes, flags, off, length)
}

// effect runs a request without payload over a range, in pieces.
func (c *Client) effect(ctx context.Context, cmd, flags uint16, off, length int64) error {
	if err := c.checkRange(off, length); err != nil {
		return err
	}
	step := int64(maxEffect) - int64(maxEffect)%int64(c.info.BlockSizes.Minimum)
	for length > 0 {
		n := min(length, step)
		if err := c.simple(ctx, cmd, flags, uint64(off), uint32(n)); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// BlockStatus asks the status of [off, off+length) in every selected meta
// context (NBD_CMD_BLOCK_STATUS; with reqOne, one extent each). The
// extents of each context are consecutive from off; they may cover less
// than asked (ask again from where they end) or, for the last, more.
func (c *Client) BlockStatus(ctx context.Context, off, length int64, reqOne bool) (map[string][]Extent, error) {
	if !c.info.Structured || len(c.meta) == 0 {
		return nil, fmt.Errorf("nbd: block status without a selected meta context: %w", ErrUnsupported)
	}
	length = min(length, 1<<32-int64(c.info.BlockSizes.Minimum))
	if err := c.checkRange(off, length); err != nil {
		return nil, err
	}
	var flags uint16
	if reqOne {
		flags = cmdFlagReqOne
	}
	cl := c.newCall(cmdBlockStatus, flags, uint64(off), uint32(length), nil)
	if err := c.start(ctx, cl, nil); err != nil {
		callPool.Put(cl)
		return nil, err
	}
	mine, err := cl.wait(ctx)
	if !mine {
		return nil, err
	}
	if err == nil {
		err = cl.result()
	}
	ext := cl.ext
	if err == nil && len(ext) != len(c.meta) {
		err = fmt.Errorf("%w: block status answered %d of %d contexts", ErrProtocol, len(ext), len(c.meta))
	}
	cl.release()
	if err != nil {
		return nil, err
	}
	return ext, nil
}
