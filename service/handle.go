package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/control"
)

// Open opens a device through the daemon as a user (it counts in info's
// Open, and remove refuses it as busy, until Close). The handle has a
// connection of its own that carries its I/O as binary frames; many
// goroutines may use it at once, their requests in flight together.
func (c *Client) Open(ctx context.Context, r control.OpenReq) (control.Handle, error) {
	conn, err := net.Dial("unix", c.path)
	if err != nil {
		return nil, fmt.Errorf("daemon %s: %w", c.path, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	params, err := json.Marshal(r)
	if err != nil {
		conn.Close()
		return nil, err
	}
	b, _ := json.Marshal(request{ID: 1, Method: methodOpen, Params: params, Dir: workDir()})
	rd := bufio.NewReaderSize(conn, 64<<10)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		conn.Close()
		return nil, fmt.Errorf("daemon %s: %w", c.path, err)
	}
	line, err := readLine(rd, maxLine)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("daemon %s: %w", c.path, err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		conn.Close()
		return nil, fmt.Errorf("daemon %s: bad response: %w", c.path, err)
	}
	if resp.Error != nil {
		conn.Close()
		return nil, resp.Error.Err()
	}
	var or OpenResp
	if err := json.Unmarshal(resp.Result, &or); err != nil {
		conn.Close()
		return nil, fmt.Errorf("daemon %s: bad response: %w", c.path, err)
	}
	h := &remoteHandle{name: r.Name, conn: conn, rd: rd, readOnly: or.ReadOnly, waiting: map[uint64]*pendingIO{}, gone: make(chan struct{})}
	go h.readReplies()
	return h, nil
}

// remoteHandle is a handle on the daemon's side of a connection.
type remoteHandle struct {
	name     string
	conn     net.Conn
	rd       *bufio.Reader
	readOnly bool

	wmu sync.Mutex // one frame written at a time

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]*pendingIO
	dead    error // set once the connection failed or was closed

	gone chan struct{} // closed when readReplies returns: the daemon hung up
}

type pendingIO struct {
	dst  []byte // where a read's data goes
	done chan struct{}
	n    uint64
	err  error
}

// errClosed is the error of a handle that was closed.
var errClosed = fmt.Errorf("%w: handle is closed", syscall.EBADF)

// readReplies hands each reply to its request until the connection ends.
func (h *remoteHandle) readReplies() {
	defer close(h.gone)
	var hdr [ioHeader]byte
	fail := func(err error) {
		h.mu.Lock()
		if h.dead == nil {
			h.dead = fmt.Errorf("daemon connection of %s: %w", h.name, err)
		}
		for id, p := range h.waiting {
			p.err = h.dead
			close(p.done)
			delete(h.waiting, id)
		}
		h.mu.Unlock()
	}
	for {
		if _, err := io.ReadFull(h.rd, hdr[:]); err != nil {
			fail(err)
			return
		}
		rep, err := decodeReply(hdr[:])
		if err != nil {
			fail(err)
			return
		}
		h.mu.Lock()
		p := h.waiting[rep.id]
		delete(h.waiting, rep.id)
		h.mu.Unlock()
		if p == nil || int(rep.dataLen) > len(p.dst) {
			fail(fmt.Errorf("%w: reply to no request", errFrame))
			return
		}
		if _, err := io.ReadFull(h.rd, p.dst[:rep.dataLen]); err != nil {
			p.err = err
			close(p.done)
			fail(err)
			return
		}
		p.n = rep.n
		if rep.errLen > 0 {
			eb := make([]byte, rep.errLen)
			if _, err := io.ReadFull(h.rd, eb); err != nil {
				p.err = err
				close(p.done)
				fail(err)
				return
			}
			var we control.WireError
			if err := json.Unmarshal(eb, &we); err != nil {
				p.err = fmt.Errorf("%w: bad error: %v", errFrame, err)
			} else {
				p.err = we.Err()
			}
		}
		close(p.done)
	}
}

// do sends one request and waits for its reply; a context that ends first
// cancels it on the daemon's side.
func (h *remoteHandle) do(ctx context.Context, op uint8, off uint64, length uint32, data, dst []byte) (uint64, error) {
	p := &pendingIO{dst: dst, done: make(chan struct{})}
	h.mu.Lock()
	if h.dead != nil {
		err := h.dead
		h.mu.Unlock()
		return 0, err
	}
	h.next++
	id := h.next
	h.waiting[id] = p
	h.mu.Unlock()
	var hdr [ioHeader]byte
	ioRequest{op: op, id: id, offset: off, length: length}.encode(hdr[:])
	if err := h.send(hdr[:], data); err != nil {
		h.mu.Lock()
		delete(h.waiting, id)
		h.mu.Unlock()
		return 0, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		ioRequest{op: ioCancel, id: id, offset: id}.encode(hdr[:])
		h.send(hdr[:], nil)
		<-p.done
		if errors.Is(p.err, context.Canceled) {
			return p.n, ctx.Err() // the cancel was this context's
		}
	}
	return p.n, p.err
}

func (h *remoteHandle) send(hdr, data []byte) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	buf := net.Buffers{hdr}
	if len(data) > 0 {
		buf = append(buf, data)
	}
	if _, err := buf.WriteTo(h.conn); err != nil {
		return fmt.Errorf("daemon connection of %s: %w", h.name, err)
	}
	return nil
}

func (h *remoteHandle) ReadAt(p []byte, off int64) (int, error) {
	return h.ReadAtContext(context.Background(), p, off)
}

func (h *remoteHandle) WriteAt(p []byte, off int64) (int, error) {
	return h.WriteAtContext(context.Background(), p, off)
}

// ReadAtContext reads in requests of at most control.MaxIO bytes.
func (h *remoteHandle) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", syscall.EINVAL, off)
	}
	done := 0
	for done < len(p) {
		k := min(len(p)-done, control.MaxIO)
		n, err := h.do(ctx, ioRead, uint64(off)+uint64(done), uint32(k), nil, p[done:done+k])
		done += int(n)
		if err != nil {
			return done, err
		}
		if int(n) < k {
			return done, io.ErrUnexpectedEOF // the daemon's read stopped short without saying why
		}
	}
	return done, nil
}

// WriteAtContext writes in requests of at most control.MaxIO bytes.
func (h *remoteHandle) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", syscall.EINVAL, off)
	}
	done := 0
	for done < len(p) {
		k := min(len(p)-done, control.MaxIO)
		n, err := h.do(ctx, ioWrite, uint64(off)+uint64(done), uint32(k), p[done:done+k], nil)
		done += int(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (h *remoteHandle) ranged(ctx context.Context, op uint8, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("%w: negative range %d+%d", syscall.EINVAL, off, n)
	}
	for n > 0 {
		k := min(n, control.MaxIO)
		if _, err := h.do(ctx, op, uint64(off), uint32(k), nil, nil); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (h *remoteHandle) WriteZeroes(ctx context.Context, off, n int64) error {
	return h.ranged(ctx, ioWriteZeroes, off, n)
}

func (h *remoteHandle) Discard(ctx context.Context, off, n int64) error {
	return h.ranged(ctx, ioDiscard, off, n)
}

func (h *remoteHandle) Flush(ctx context.Context) error {
	_, err := h.do(ctx, ioFlush, 0, 0, nil, nil)
	return err
}

// Size asks the daemon for the device's size now (-1 if it cannot).
func (h *remoteHandle) Size() int64 {
	n, err := h.do(context.Background(), ioSize, 0, 0, nil, nil)
	if err != nil {
		return -1
	}
	return int64(n)
}

func (h *remoteHandle) ReadOnly() bool { return h.readOnly }

// closeWait bounds how long Close waits for the daemon to release the
// handle; a daemon that takes longer is hung up on.
const closeWait = 10 * time.Second

// Close ends the handle and its connection. Like close(2) of a device, it
// returns once the daemon has released the handle (its open count has
// dropped): it ends the stream's sending side and waits for the daemon,
// which ends requests still running, to hang up.
func (h *remoteHandle) Close() error {
	h.mu.Lock()
	if errors.Is(h.dead, errClosed) {
		h.mu.Unlock()
		return nil
	}
	h.dead = errClosed
	h.mu.Unlock()
	if cw, ok := h.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		t := time.NewTimer(closeWait)
		select {
		case <-h.gone:
		case <-t.C:
		}
		t.Stop()
	}
	return h.conn.Close()
}
