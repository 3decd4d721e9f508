package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/daxstack/daxstack/control"
)

// open answers an "open" request: on success the connection becomes the
// handle's I/O stream (see frames.go).
func (c *conn) open(ctx context.Context, req request) (control.Handle, response) {
	resp := response{ID: req.ID}
	var r control.OpenReq
	if err := json.Unmarshal(req.Params, &r); err != nil {
		resp.Error = control.EncodeError(fmt.Errorf("%w: open: %v", control.ErrUsage, err))
		return nil, resp
	}
	if c.subbed.Load() {
		resp.Error = control.EncodeError(fmt.Errorf("%w: open: this connection streams events", control.ErrUsage))
		return nil, resp
	}
	if err := c.authorize(methodOpen); err != nil {
		resp.Error = control.EncodeError(err)
		return nil, resp
	}
	h, err := c.s.eng.Open(c.forPeer(ctx, req.Dir), r)
	if err != nil {
		resp.Error = control.EncodeError(err)
		return nil, resp
	}
	resp.Result, _ = json.Marshal(OpenResp{Size: h.Size(), ReadOnly: h.ReadOnly()})
	return h, resp
}

// ioInFlight bounds the requests one I/O stream runs at once (and so the
// buffers it holds); a client that sends more waits.
const ioInFlight = 16

// serveIO serves a handle's I/O stream until the connection ends, then
// closes the handle. Requests run concurrently; a malformed frame ends
// the connection.
func (c *conn) serveIO(ctx context.Context, h control.Handle, rd *bufio.Reader) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		h.Close()
	}()
	var mu sync.Mutex
	running := map[uint64]context.CancelFunc{}
	sem := make(chan struct{}, ioInFlight)
	var hdr [ioHeader]byte
	for {
		if _, err := io.ReadFull(rd, hdr[:]); err != nil {
			return
		}
		req, err := decodeRequest(hdr[:])
		if err != nil {
			c.s.cfg.Logf("daxstack: I/O stream of uid %d: %v", c.cred.Uid, err)
			return
		}
		if req.op == ioCancel {
			mu.Lock()
			if stop := running[req.offset]; stop != nil {
				stop()
			}
			mu.Unlock()
			continue
		}
		var data []byte
		if req.op == ioWrite {
			data = make([]byte, req.length)
			if _, err := io.ReadFull(rd, data); err != nil {
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		rctx, stop := context.WithCancel(ctx)
		mu.Lock()
		running[req.id] = stop
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, out, err := runIO(rctx, h, req, data)
			mu.Lock()
			delete(running, req.id)
			mu.Unlock()
			stop()
			c.wmu.Lock()
			werr := writeReply(c.w, req.id, n, out, err)
			if werr == nil {
				werr = c.w.Flush()
			}
			c.wmu.Unlock()
			<-sem
			if werr != nil {
				cancel()
			}
		}()
	}
}

// runIO runs one request of an I/O stream.
func runIO(ctx context.Context, h control.Handle, r ioRequest, data []byte) (uint64, []byte, error) {
	off := int64(r.offset)
	if off < 0 {
		return 0, nil, fmt.Errorf("%w: offset %d is too large", control.ErrUsage, r.offset)
	}
	switch r.op {
	case ioRead:
		n := int64(r.length)
		if size := h.Size(); off >= size {
			n = min(n, 1) // past the end: nothing to allocate (one byte to hear EOF)
		} else {
			n = min(n, size-off+1) // no buffer past the end of the device
		}
		buf := make([]byte, n)
		k, err := h.ReadAtContext(ctx, buf, off)
		return uint64(k), buf[:k], err
	case ioWrite:
		n, err := h.WriteAtContext(ctx, data, off)
		return uint64(n), nil, err
	case ioWriteZeroes, ioDiscard:
		var err error
		if r.op == ioWriteZeroes {
			err = h.WriteZeroes(ctx, off, int64(r.length))
		} else {
			err = h.Discard(ctx, off, int64(r.length))
		}
		if err != nil {
			return 0, nil, err
		}
		return uint64(r.length), nil, nil
	case ioFlush:
		return 0, nil, h.Flush(ctx)
	case ioSize:
		return uint64(h.Size()), nil, nil
	}
	return 0, nil, errors.New("unreachable")
}
