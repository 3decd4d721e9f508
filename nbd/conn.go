package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// serverConn is one client connection of a Server: the handshake, then
// the transmission phase with one goroutine reading requests, workers
// serving them and one writer sending the replies.
type serverConn struct {
	srv     *Server
	peer    *Peer
	raw     net.Conn // as accepted
	conn    net.Conn // raw, or the TLS session over it
	tlsConn *tls.Conn
	br      *bufio.Reader
	hbuf    []byte // option replies being built

	// ctx is given to the backend; it ends when the connection is torn
	// down (not at the start of a graceful shutdown).
	ctx    context.Context
	cancel context.CancelFunc

	shutdown atomic.Bool // Serve's context ended: drain and go
	gone     atomic.Bool // the backend said its export was removed

	// Negotiated in the handshake.
	noZeroes   bool
	structured bool
	meta       []metaContext // selected by NBD_OPT_SET_META_CONTEXT
	metaExport string        // the export name they were selected for
	metaSet    bool
	exp        *Export
	flags      Flags

	// Transmission.
	out        replyQueue
	budget     budget
	workers    int // started
	maxWorkers int
	work       chan *request
	inflight   sync.WaitGroup
	dead       atomic.Bool // the writer failed: stop reading
}

// metaContext is a selected meta context and the ID told to the client.
type metaContext struct {
	id   uint32
	name string
}

func newServerConn(s *Server, c net.Conn) *serverConn {
	sc := &serverConn{srv: s, raw: c, conn: c, br: bufio.NewReaderSize(c, 64<<10)}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	return sc
}

// serve runs the session to its end and closes the connection.
func (sc *serverConn) serve() error {
	defer sc.cancel()
	defer sc.raw.Close()
	sc.peer = peerOf(sc.raw)
	if sc.srv.Authorize != nil {
		if err := sc.srv.Authorize(sc.peer); err != nil {
			return err
		}
	}
	if err := sc.handshake(); err != nil {
		if errors.Is(err, errAbort) {
			err = nil
		}
		sc.closeConn()
		return err
	}
	sc.hbuf = nil
	sc.conn.SetDeadline(time.Time{})
	if sc.shuttingDown() {
		sc.conn.SetReadDeadline(time.Now().Add(sc.srv.shutdownGrace()))
	}
	err := sc.transmit()
	sc.exp.Backend.Close()
	sc.closeConn()
	return err
}

// closeConn ends the session: TLS is shut down first, as the spec asks.
func (sc *serverConn) closeConn() {
	if sc.tlsConn != nil {
		sc.tlsConn.SetWriteDeadline(time.Now().Add(time.Second))
		sc.tlsConn.Close()
	}
	sc.raw.Close()
}

func (sc *serverConn) shuttingDown() bool { return sc.shutdown.Load() }

// beginShutdown starts a graceful end: later options and requests are
// answered with shutdown errors, and reads stop after the grace period.
func (sc *serverConn) beginShutdown() {
	sc.shutdown.Store(true)
	sc.raw.SetReadDeadline(time.Now().Add(sc.srv.shutdownGrace()))
}

// budget bounds the requests of a connection in flight and their bytes.
type budget struct {
	mu       sync.Mutex
	cond     sync.Cond
	reqs     int
	bytes    int
	maxReqs  int
	maxBytes int
	closed   bool
}

func (b *budget) init(reqs, bytes int) {
	b.cond.L = &b.mu
	b.maxReqs, b.maxBytes = reqs, bytes
}

// acquire waits for room for one request of n bytes; false once closed.
func (b *budget) acquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && (b.reqs >= b.maxReqs || (b.bytes > 0 && b.bytes+n > b.maxBytes)) {
		b.cond.Wait()
	}
	if b.closed {
		return false
	}
	b.reqs++
	b.bytes += n
	return true
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.reqs--
	b.bytes -= n
	b.mu.Unlock()
	b.cond.Signal()
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
