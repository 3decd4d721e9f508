package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
)

// conn is one client connection.
type conn struct {
	s    *Server
	c    *net.UnixConn
	cred *unix.Ucred

	wmu    sync.Mutex
	w      *bufio.Writer
	cmu    sync.Mutex
	claims []control.ClaimReq // connection-bound claims, released at close
	subbed atomic.Bool

	// Delivery state of a subscription, for pre-remove waits.
	amu     sync.Mutex
	acked   uint64   // the client handled every event up to here
	pos     uint64   // the stream has read the log up to here
	unacked []uint64 // pre-remove events sent and not acknowledged yet
}

// serveConn serves one connection: requests in order, each answered
// before the next is read... while a command runs its connection is
// watched, so that a client that goes away (or gives up) ends the
// command's context.
func (s *Server) serveConn(ctx context.Context, uc *net.UnixConn) {
	c := &conn{s: s, c: uc, w: bufio.NewWriter(uc)}
	defer uc.Close()
	cred, err := peerCred(uc)
	if err != nil {
		s.cfg.Logf("daxstack: peer credentials: %v", err)
		return
	}
	c.cred = cred
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	connCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		// A claim ends when its client goes away, not when the daemon
		// stops: the claim stays recorded (with the holder's PID) for the
		// next daemon, and the holder claims it again when it reconnects.
		if ctx.Err() == nil {
			c.releaseClaims()
		}
		s.ackChanged()
	}()
	rd := bufio.NewReaderSize(uc, 64<<10)
	lines := make(chan []byte)
	// The reader: lines in order; the end of the connection cancels
	// whatever runs. It stops reading when the connection turns into an
	// I/O stream (takeover), which then reads the rest itself.
	takeover := make(chan struct{})
	go func() {
		defer close(lines)
		for {
			line, err := readLine(rd, maxLine)
			if err != nil {
				cancel()
				return
			}
			select {
			case lines <- line:
			case <-connCtx.Done():
				return
			}
			if isOpen(line) {
				<-takeover
				return
			}
		}
	}()
	for line := range lines {
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			c.send(response{Error: control.EncodeError(fmt.Errorf("%w: bad request: %v", control.ErrUsage, err))})
			continue
		}
		switch {
		case req.Ack != nil:
			c.ack(*req.Ack)
			s.ackChanged()
		case req.Method == methodSubscribe:
			sub, err := c.subscribe(connCtx, req)
			if err != nil {
				c.send(response{ID: req.ID, Error: control.EncodeError(err)})
				continue
			}
			res, _ := json.Marshal(SubscribeResp{Devices: sub.Devices, Since: sub.Since})
			c.send(response{ID: req.ID, Result: res})
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.stream(connCtx, req.ID, sub)
			}()
		case req.Method == methodOpen:
			h, resp := c.open(connCtx, req)
			c.send(resp)
			close(takeover)
			if h != nil {
				c.serveIO(connCtx, h, rd)
			}
			return
		default:
			c.send(c.handle(connCtx, req))
		}
	}
}

// isOpen reports whether a line asks for an I/O stream (see serveConn).
func isOpen(line []byte) bool {
	var r struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(line, &r) == nil && r.Method == methodOpen
}

// mayCall refuses a method that changes state to a peer that may not.
func (c *conn) mayCall(method string) error {
	m, ok := methods[method]
	if !ok || !m.mutates || c.mayChange() {
		return nil
	}
	return c.refuse(method + " changes state")
}

// refuse is the refusal of what only root and the group may do.
func (c *conn) refuse(what string) error {
	who := "root"
	if c.s.cfg.Group != "" {
		who = "root and group " + c.s.cfg.Group
	}
	return fmt.Errorf("%w: %s, which only %s may do (you are uid %d)", syscall.EACCES, what, who, c.cred.Uid)
}

// claim claims a device for this connection: the claim carries the peer's
// PID and ends when the connection does.
func (c *conn) claim(ctx context.Context, cl control.ClaimReq) (control.ClaimReq, error) {
	cl.PID = int(c.cred.Pid)
	cr, err := c.s.eng.Claim(ctx, cl)
	if err != nil {
		return cl, err
	}
	cl.Device = cr.Device
	c.cmu.Lock()
	c.claims = append(c.claims, cl)
	c.cmu.Unlock()
	return cl, nil
}

// release ends one of this connection's claims.
func (c *conn) release(cl control.ClaimReq) {
	// Not held any more (the holder released it itself just before it
	// went away) is what this release wanted.
	if err := c.s.eng.Release(context.Background(), control.ClaimReq{Device: cl.Device, Holder: cl.Holder}); err != nil && !errors.Is(err, stack.ErrNotFound) {
		c.s.cfg.Logf("daxstack: releasing %s for %s: %v", cl.Device, cl.Holder, err)
	}
	c.s.forgetClaim(cl.Device)
}

// forgetClaim drops a released device from every connection's claims.
func (s *Server) forgetClaim(device string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.cmu.Lock()
		c.claims = slices.DeleteFunc(c.claims, func(x control.ClaimReq) bool { return x.Device == device })
		c.cmu.Unlock()
	}
}

func (c *conn) send(r response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w.Write(b)
	c.w.WriteByte('\n')
	return c.w.Flush()
}

// handle runs one request of the method table.
func (c *conn) handle(ctx context.Context, req request) response {
	resp := response{ID: req.ID}
	fail := func(err error) response {
		resp.Error = control.EncodeError(err)
		return resp
	}
	m, ok := methods[req.Method]
	if !ok {
		return fail(fmt.Errorf("%w: no command %q", control.ErrUsage, req.Method))
	}
	if err := c.mayCall(req.Method); err != nil {
		return fail(err)
	}
	if req.Method == "claim" {
		var cl control.ClaimReq
		if err := json.Unmarshal(req.Params, &cl); err != nil {
			return fail(fmt.Errorf("%w: claim: %v", control.ErrUsage, err))
		}
		cl, err := c.claim(ctx, cl) // the claim dies with this connection
		if err != nil {
			return fail(err)
		}
		resp.Result, _ = json.Marshal(control.ClaimResp{Device: cl.Device})
		return resp
	}
	res, err := c.s.call(ctx, m, req.Params)
	if res != nil {
		var merr error
		if resp.Result, merr = json.Marshal(res); merr != nil && err == nil {
			err = fmt.Errorf("%w: %s: encoding the result: %v", control.ErrInternal, req.Method, merr)
		}
	}
	if err != nil {
		return fail(err)
	}
	switch req.Method {
	case "release":
		var cl control.ClaimReq
		if json.Unmarshal(req.Params, &cl) == nil {
			c.s.forgetClaim(strings.TrimPrefix(cl.Device, "/dev/mapper/"))
		}
	case "pre-remove":
		c.s.waitForHolders(ctx, res.(control.PreRemoveResp).Events)
	}
	return resp
}

// call runs a method of the table on the engine; a panic (a bug) is an
// ErrInternal error, never an answer to input.
func (s *Server) call(ctx context.Context, m method, params json.RawMessage) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%w: %s: %v", control.ErrInternal, m.name, r)
		}
	}()
	return m.call(ctx, s.eng, params)
}

// releaseClaims ends the claims of a closed connection.
func (c *conn) releaseClaims() {
	c.cmu.Lock()
	claims := c.claims
	c.claims = nil
	c.cmu.Unlock()
	for _, cl := range claims {
		c.release(cl)
	}
}

// holdsFor reports whether the connection claims device.
func (c *conn) holdsFor(device string) bool {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return slices.ContainsFunc(c.claims, func(x control.ClaimReq) bool { return x.Device == device })
}
