package nbd

import (
	"encoding/binary"
	"net"
	"sync"
	"syscall"
	"time"
)

// The server's replies: how each outcome is put on the wire, and how they
// are sent, many at a time in one writev.
//
// The rule that matters most: a reply never says success for data that
// is not known good. A read is served into a buffer first; only its good
// prefix is ever sent as data, and a failure is an error reply (simple
// replies: no payload at all; structured replies: the good prefix as an
// NBD_REPLY_TYPE_OFFSET_DATA chunk, then NBD_REPLY_TYPE_ERROR_OFFSET at
// the failing byte, flagged NBD_REPLY_FLAG_DONE).

// replyQueue holds served requests until they are sent. There is no
// writer goroutine: the goroutine that queues a reply sends it, with
// every other reply queued meanwhile, if no other goroutine is sending;
// otherwise the one sending takes it along (a combining lock). So a reply
// costs no hand-off to another goroutine, and replies that are ready
// together go in one writev.
type replyQueue struct {
	mu sync.Mutex
	q  []*request

	send  sync.Mutex // held while sending
	batch []*request // the sender's
	vec   net.Buffers
	wv    net.Buffers // what WriteTo consumes (a field: a local would escape)
}

// queue queues r's reply and sends what is queued unless another
// goroutine is sending (it will send r too: it looks at the queue again
// after it lets go of the send lock).
func (sc *serverConn) queue(r *request) {
	q := &sc.out
	q.mu.Lock()
	q.q = append(q.q, r)
	q.mu.Unlock()
	for q.send.TryLock() {
		sc.sendQueued()
		q.send.Unlock()
		q.mu.Lock()
		empty := len(q.q) == 0
		q.mu.Unlock()
		if empty {
			return
		}
	}
}

// sendQueued sends replies until the queue is empty; it holds the send
// lock. After a failed write it sends nothing more, closes the connection
// (which ends the reader) and only releases what is queued.
func (sc *serverConn) sendQueued() {
	q := &sc.out
	for {
		q.mu.Lock()
		q.batch = append(q.batch[:0], q.q...)
		clear(q.q)
		q.q = q.q[:0]
		q.mu.Unlock()
		if len(q.batch) == 0 {
			return
		}
		if !sc.dead.Load() {
			vec := q.vec[:0]
			for _, r := range q.batch {
				vec = sc.appendReply(vec, r)
			}
			sc.conn.SetWriteDeadline(time.Now().Add(sc.srv.writeTimeout()))
			q.wv = vec
			if _, err := q.wv.WriteTo(sc.conn); err != nil {
				sc.srv.logger().Debug("nbd: sending replies failed", "err", err)
				sc.dead.Store(true)
				sc.budget.close()
				sc.raw.Close()
			}
			clear(vec)
			q.vec = vec[:0]
		}
		for i, r := range q.batch {
			sc.finish(r)
			q.batch[i] = nil
		}
	}
}

// finish releases a request whose reply was sent (or dropped).
func (sc *serverConn) finish(r *request) {
	sc.budget.release(r.cost)
	putRequest(r)
	sc.inflight.Done()
}

// appendReply appends the wire form of r's reply to vec.
func (sc *serverConn) appendReply(vec net.Buffers, r *request) net.Buffers {
	h := r.hdr[:0]
	if !sc.structured {
		h = appendSimpleReply(h, r.errno, r.cookie)
		vec = append(vec, h)
		if r.cmd == cmdRead && r.errno == 0 {
			vec = append(vec, r.data)
		}
		return vec
	}
	switch {
	case r.cmd == cmdRead && r.errno == 0:
		if len(r.data) == 0 {
			return append(vec, appendChunkHeader(h, replyFlagDone, replyTypeNone, r.cookie, 0))
		}
		h = appendChunkHeader(h, replyFlagDone, replyTypeOffsetData, r.cookie, uint32(8+len(r.data)))
		h = binary.BigEndian.AppendUint64(h, r.off)
		return append(vec, h, r.data)
	case r.cmd == cmdRead && r.hasOff:
		good := int(r.errOff - r.off)
		if good > r.n {
			good = r.n
		}
		if good > 0 {
			h = appendChunkHeader(h, 0, replyTypeOffsetData, r.cookie, uint32(8+good))
			h = binary.BigEndian.AppendUint64(h, r.off)
			vec = append(vec, h, r.data[:good])
			h = h[len(h):]
		}
		return append(vec, appendErrorChunk(h, r.cookie, r.errno, true, r.off+uint64(good)))
	case r.cmd == cmdBlockStatus && r.errno == 0:
		return append(vec, r.data)
	case r.errno == 0:
		return append(vec, appendSimpleReply(h, 0, r.cookie))
	default:
		offOK := r.hasOff && r.cmd != cmdFlush
		return append(vec, appendErrorChunk(h, r.cookie, r.errno, offOK, r.errOff))
	}
}

func appendSimpleReply(b []byte, e Errno, cookie uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, simpleReplyMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(e))
	return binary.BigEndian.AppendUint64(b, cookie)
}

func appendChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, structuredReplyMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, length)
}

// appendErrorChunk appends an NBD_REPLY_TYPE_ERROR chunk, or
// NBD_REPLY_TYPE_ERROR_OFFSET at off, flagged done. The message is the
// errno's text only: a backend's own error may name host paths the peer
// has no business seeing.
func appendErrorChunk(b []byte, cookie uint64, e Errno, withOff bool, off uint64) []byte {
	if e == 0 {
		e = EIO
	}
	msg := syscall.Errno(e).Error()
	typ, n := uint16(replyTypeError), 6+len(msg)
	if withOff {
		typ, n = replyTypeErrorOffset, n+8
	}
	b = appendChunkHeader(b, replyFlagDone, typ, cookie, uint32(n))
	b = binary.BigEndian.AppendUint32(b, uint32(e))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	if withOff {
		b = binary.BigEndian.AppendUint64(b, off)
	}
	return b
}

// Buffers for payloads come from pools by power-of-two size class, from
// 4 KiB to the largest payload, so that the hot path allocates nothing.
const (
	minBufShift = 12
	maxBufShift = 25
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	c := 0
	for n > 1<<(minBufShift+c) {
		c++
	}
	return c
}

// getBuf returns a buffer of at least n bytes (n at most 1<<maxBufShift).
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 1<<(minBufShift+c))
	return &b
}

func putBuf(p *[]byte) {
	n := cap(*p)
	c := bufClass(n)
	if c >= len(bufPools) || n != 1<<(minBufShift+c) {
		return
	}
	*p = (*p)[:n]
	bufPools[c].Put(p)
}
