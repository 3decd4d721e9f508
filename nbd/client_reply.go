package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// The client's reader: one goroutine per connection reading replies,
// checking each against the request it answers (a reply the spec does not
// allow ends the session: the stream cannot be trusted after it) and
// completing the requests.

// reader reads replies until the connection ends.
func (c *Client) reader() {
	defer close(c.rdone)
	err := c.readReplies()
	c.mu.Lock()
	closing := c.closing && len(c.pending) == 0
	c.mu.Unlock()
	if closing && (errors.Is(err, io.EOF) || errors.Is(err, ErrClosed)) {
		c.die(ErrClosed)
		return
	}
	c.die(fmt.Errorf("%w: %w", ErrClosed, err))
}

func (c *Client) readReplies() error {
	h := c.rscratch[16:36]
	var scratch []byte
	for {
		if _, err := io.ReadFull(c.br, h[:4]); err != nil {
			return err
		}
		switch m := binary.BigEndian.Uint32(h[:]); m {
		case simpleReplyMagic:
			if _, err := io.ReadFull(c.br, h[4:simpleReplyHeaderLen]); err != nil {
				return err
			}
			if err := c.simpleReply(h[:simpleReplyHeaderLen]); err != nil {
				return err
			}
		case structuredReplyMagic:
			if _, err := io.ReadFull(c.br, h[4:structuredReplyHeaderLen]); err != nil {
				return err
			}
			var err error
			if scratch, err = c.chunk(h[:], scratch); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: reply magic %#x", ErrProtocol, m)
		}
	}
}

// lookup returns the pending call of cookie.
func (c *Client) lookup(cookie uint64) (*call, error) {
	c.mu.Lock()
	cl := c.pending[cookie]
	c.mu.Unlock()
	if cl == nil {
		return nil, fmt.Errorf("%w: reply to unknown cookie %d", ErrProtocol, cookie)
	}
	return cl, nil
}

func (c *Client) complete(cookie uint64, cl *call) {
	c.mu.Lock()
	delete(c.pending, cookie)
	c.mu.Unlock()
	shutdown := cl.failed && cl.errno == ESHUTDOWN
	cl.finish(nil)
	if shutdown {
		// The spec: a client told NBD_ESHUTDOWN MUST disconnect (softly:
		// what is in flight completes first).
		c.shutdownOnce.Do(func() { go c.Close() })
	}
}

func (c *Client) simpleReply(h []byte) error {
	e := Errno(binary.BigEndian.Uint32(h[4:]))
	cookie := binary.BigEndian.Uint64(h[8:])
	cl, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	if c.info.Structured && cl.cmd == cmdRead {
		return fmt.Errorf("%w: simple reply to a read with structured replies", ErrProtocol)
	}
	if cl.cmd == cmdBlockStatus && e == 0 {
		return fmt.Errorf("%w: simple success reply to block status", ErrProtocol)
	}
	if e != 0 {
		cl.failed, cl.errno, cl.noOff = true, e, true
	} else if cl.cmd == cmdRead {
		cl.mu.Lock()
		var err error
		if cl.abandoned {
			_, err = io.CopyN(io.Discard, c.br, int64(cl.length))
		} else {
			_, err = io.ReadFull(c.br, cl.buf)
		}
		cl.mu.Unlock()
		if err != nil {
			return err
		}
		cl.spans = append(cl.spans, span64{cl.off, cl.off + uint64(cl.length)})
	}
	c.complete(cookie, cl)
	return nil
}

// maxChunk bounds any structured chunk: the largest read data chunk, or
// a block status chunk of the spec's 2^20 descriptors.
const maxChunk = DefaultMaxPayload + 8

// chunk handles one structured reply chunk whose header is h.
func (c *Client) chunk(h []byte, scratch []byte) ([]byte, error) {
	flags := binary.BigEndian.Uint16(h[4:])
	typ := binary.BigEndian.Uint16(h[6:])
	cookie := binary.BigEndian.Uint64(h[8:])
	length := binary.BigEndian.Uint32(h[16:])
	if !c.info.Structured {
		return scratch, fmt.Errorf("%w: structured reply without negotiation", ErrProtocol)
	}
	if length > maxChunk {
		return scratch, fmt.Errorf("%w: chunk of %d bytes", ErrProtocol, length)
	}
	cl, err := c.lookup(cookie)
	if err != nil {
		return scratch, err
	}
	bad := func(why string) ([]byte, error) {
		return scratch, fmt.Errorf("%w: %s (chunk type %d, %d bytes, cookie %d)", ErrProtocol, why, typ, length, cookie)
	}
	switch {
	case typ == replyTypeNone:
		if length != 0 || flags&replyFlagDone == 0 {
			return bad("NBD_REPLY_TYPE_NONE must be empty and final")
		}
	case typ == replyTypeOffsetData:
		if cl.cmd != cmdRead || length < 9 {
			return bad("bad data chunk")
		}
		o := c.rscratch[:8]
		if _, err := io.ReadFull(c.br, o); err != nil {
			return scratch, err
		}
		off, n := binary.BigEndian.Uint64(o), uint64(length-8)
		if err := cl.cover(off, n); err != nil {
			return bad(err.Error())
		}
		cl.mu.Lock()
		if cl.abandoned {
			_, err = io.CopyN(io.Discard, c.br, int64(n))
		} else {
			_, err = io.ReadFull(c.br, cl.buf[off-cl.off:off-cl.off+n])
		}
		cl.mu.Unlock()
		if err != nil {
			return scratch, err
		}
	case typ == replyTypeOffsetHole:
		if cl.cmd != cmdRead || length != 12 {
			return bad("bad hole chunk")
		}
		o := c.rscratch[:12]
		if _, err := io.ReadFull(c.br, o); err != nil {
			return scratch, err
		}
		off, n := binary.BigEndian.Uint64(o), uint64(binary.BigEndian.Uint32(o[8:]))
		if n == 0 {
			return bad("empty hole")
		}
		if err := cl.cover(off, n); err != nil {
			return bad(err.Error())
		}
		cl.mu.Lock()
		if !cl.abandoned {
			clear(cl.buf[off-cl.off : off-cl.off+n])
		}
		cl.mu.Unlock()
	case typ == replyTypeBlockStatus:
		// The spec: at most 2^20 descriptors, and none of length 0, so
		// never more descriptors than bytes asked about.
		if cl.cmd != cmdBlockStatus || length < 12 || (length-4)%8 != 0 ||
			(length-4)/8 > min(1<<20, max(cl.length, 1)) {
			return bad("bad block status chunk")
		}
		if cap(scratch) < int(length) {
			scratch = make([]byte, length)
		}
		p := scratch[:length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return scratch, err
		}
		if err := c.blockStatusChunk(cl, p); err != nil {
			return bad(err.Error())
		}
	case typ&replyTypeErrorBit != 0:
		if length < 6 || length > 6+maxString+8 {
			return bad("error chunk of a bad length")
		}
		if cap(scratch) < int(length) {
			scratch = make([]byte, length)
		}
		p := scratch[:length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return scratch, err
		}
		if err := cl.errorChunk(typ, p); err != nil {
			return bad(err.Error())
		}
	default:
		return bad("unknown chunk type")
	}
	if flags&replyFlagDone != 0 {
		if !cl.failed {
			switch cl.cmd {
			case cmdRead:
				if len(cl.spans) != 1 || cl.spans[0] != (span64{cl.off, cl.off + uint64(cl.length)}) {
					if cl.length != 0 || len(cl.spans) != 0 {
						return bad("read reply ends without all its data")
					}
				}
			case cmdBlockStatus:
				if len(cl.ext) != len(c.meta) {
					return bad("block status reply ends without every context")
				}
			}
		}
		c.complete(cookie, cl)
	}
	return scratch, nil
}

// cover records that [off, off+n) of a read arrived; it must lie inside
// the request and overlap nothing that came before.
func (cl *call) cover(off, n uint64) error {
	end := cl.off + uint64(cl.length)
	if off < cl.off || off > end || n > end-off {
		return fmt.Errorf("chunk [%d, +%d) outside the request [%d, +%d)", off, n, cl.off, cl.length)
	}
	s := span64{off, off + n}
	i := sort.Search(len(cl.spans), func(i int) bool { return cl.spans[i].end > s.off })
	if i < len(cl.spans) && cl.spans[i].off < s.end {
		return fmt.Errorf("chunk [%d, +%d) overlaps an earlier one", off, n)
	}
	if cl.hasOff && cl.errOff >= s.off && cl.errOff < s.end {
		return fmt.Errorf("chunk [%d, +%d) covers an earlier error offset", off, n)
	}
	if len(cl.spans) > 1<<16 {
		return errors.New("too many chunks")
	}
	// Insert, merging with neighbours that touch.
	if i > 0 && cl.spans[i-1].end == s.off {
		i--
		s.off = cl.spans[i].off
		cl.spans = append(cl.spans[:i], cl.spans[i+1:]...)
	}
	if i < len(cl.spans) && cl.spans[i].off == s.end {
		s.end = cl.spans[i].end
		cl.spans = append(cl.spans[:i], cl.spans[i+1:]...)
	}
	cl.spans = append(cl.spans, span64{})
	copy(cl.spans[i+1:], cl.spans[i:])
	cl.spans[i] = s
	return nil
}

func (c *Client) blockStatusChunk(cl *call, p []byte) error {
	id := binary.BigEndian.Uint32(p)
	name, ok := c.meta[id]
	if !ok {
		return fmt.Errorf("unknown meta context id %d", id)
	}
	if cl.ext == nil {
		cl.ext = map[string][]Extent{}
	}
	if _, dup := cl.ext[name]; dup {
		return fmt.Errorf("second chunk for context %s", name)
	}
	d := p[4:]
	count := len(d) / 8
	if cl.flags&cmdFlagReqOne != 0 && count != 1 {
		return fmt.Errorf("%d extents for a request of one", count)
	}
	ext := make([]Extent, 0, count)
	pos := cl.off
	end := cl.off + uint64(cl.length)
	for i := 0; i < count; i++ {
		n := uint64(binary.BigEndian.Uint32(d[8*i:]))
		f := binary.BigEndian.Uint32(d[8*i+4:])
		if n == 0 {
			return errors.New("extent of length 0")
		}
		if pos >= end {
			return errors.New("extents go on past the end of the request")
		}
		if cl.flags&cmdFlagReqOne != 0 && n > uint64(cl.length) {
			return errors.New("the one extent is longer than the request")
		}
		ext = append(ext, Extent{Offset: int64(pos), Length: int64(n), Flags: f})
		pos += n
	}
	cl.ext[name] = ext
	return nil
}

// errorChunk records an error chunk: 32-bit error, 16-bit message length,
// message, and for NBD_REPLY_TYPE_ERROR_OFFSET a 64-bit offset.
func (cl *call) errorChunk(typ uint16, p []byte) error {
	e := Errno(binary.BigEndian.Uint32(p))
	mlen := int(binary.BigEndian.Uint16(p[4:]))
	if mlen > len(p)-6 || mlen > maxString {
		return errors.New("error message longer than its chunk")
	}
	msg := sanitize(p[6 : 6+mlen])
	tail := p[6+mlen:]
	if !cl.failed {
		cl.failed, cl.errno, cl.msg = true, e, msg
	}
	switch typ {
	case replyTypeError:
		if len(tail) != 0 {
			return errors.New("bytes after an error message")
		}
		cl.noOff = true
	case replyTypeErrorOffset:
		if len(tail) != 8 {
			return errors.New("error offset chunk without its offset")
		}
		off := binary.BigEndian.Uint64(tail)
		if off < cl.off || off-cl.off >= uint64(cl.length) {
			return fmt.Errorf("error offset %d outside the request", off)
		}
		if !cl.hasOff || off < cl.errOff {
			// A data chunk sent before it may cover it (valid up to the
			// offset); one sent after may not.
			cl.errOff, cl.hasOff = off, true
		}
	default:
		// An unknown error type: the reply failed, nothing more is known.
		cl.noOff = true
	}
	return nil
}
