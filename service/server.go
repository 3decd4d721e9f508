package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// Config configures the daemon.
type Config struct {
	Engine control.Config // the engine's database and roots (Daemon is forced on)
	Socket string         // socket path
	// Group may change state besides root: a group name or numeric gid.
	// Empty: root only.
	Group string
	// Rescan is the period of the safety-net rescan of every leaf.
	Rescan time.Duration
	// Uevents enables the kernel uevent listener.
	Uevents bool
	// AckTimeout bounds how long a pre-remove waits for holders to
	// acknowledge it.
	AckTimeout time.Duration
	// Logf logs daemon activity (log.Printf if nil).
	Logf func(format string, args ...any)
}

// ErrRunning: another daemon is listening on the socket.
var ErrRunning = errors.New("a daxstack daemon is already running on this socket")

// Server is a running daemon.
type Server struct {
	cfg Config
	eng *control.Engine
	gid int // group allowed to change state; -1: none

	mu    sync.Mutex
	wake  chan struct{} // closed and replaced whenever events are committed
	conns map[*conn]bool
	acked chan struct{} // closed and replaced whenever a client acks
	wg    sync.WaitGroup
}

// New opens the database (waiting for any embedded daxstack command that
// holds it) and prepares the daemon.
func New(cfg Config) (*Server, error) {
	if cfg.Socket == "" {
		return nil, errors.New("service: no socket path")
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = 30 * time.Second
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	gid := -1
	if cfg.Group != "" {
		g, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, err
		}
		gid = g
	}
	cfg.Engine.Daemon = true
	eng, err := control.Open(cfg.Engine)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: eng, gid: gid, wake: make(chan struct{}), acked: make(chan struct{}), conns: map[*conn]bool{}}
	eng.Listen(func([]rmapchain.Event) { s.broadcast() })
	return s, nil
}

func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("service: group %s: %w", g, err)
	}
	return strconv.Atoi(grp.Gid)
}

// Engine returns the daemon's engine.
func (s *Server) Engine() *control.Engine { return s.eng }

func (s *Server) broadcast() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) wakeChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// Serve listens on the socket, starts the watchers, and serves clients
// until ctx ends. It closes the engine when it returns.
func (s *Server) Serve(ctx context.Context) error {
	defer s.eng.Close()
	ln, err := s.listen()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if _, err := s.eng.Rescan(); err != nil {
		s.cfg.Logf("daxstack: initial rescan: %v", err)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watch(ctx) }()
	s.cfg.Logf("daxstack: serving on %s", s.cfg.Socket)
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.cfg.Logf("daxstack: accept: %v", err)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	os.Remove(s.cfg.Socket)
	return nil
}

// listen creates the socket: a stale socket file (no one answering) is
// replaced; a live one means another daemon runs.
func (s *Server) listen() (*net.UnixListener, error) {
	path := s.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrRunning, path)
	}
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	if s.gid >= 0 {
		if err := os.Chown(path, 0, s.gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// conn is one client connection.
type conn struct {
	s    *Server
	c    *net.UnixConn
	cred *unix.Ucred

	wmu    sync.Mutex
	w      *bufio.Writer
	cmu    sync.Mutex
	claims []control.ClaimReq // connection-bound claims, released at close
	subs   []string           // devices of the subscription, when subscribed
	subbed atomic.Bool
	acked  atomic.Uint64
}

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
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.releaseClaims()
		s.ackChanged()
	}()
	sc := bufio.NewScanner(uc)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			c.send(response{Error: control.EncodeError(fmt.Errorf("%w: bad request: %v", control.ErrUsage, err))})
			continue
		}
		if req.Ack != nil {
			for {
				old := c.acked.Load()
				if *req.Ack <= old || c.acked.CompareAndSwap(old, *req.Ack) {
					break
				}
			}
			s.ackChanged()
			continue
		}
		if req.Method == "subscribe" {
			var sub SubscribeReq
			if err := json.Unmarshal(req.Params, &sub); err != nil && len(req.Params) > 0 {
				c.send(response{ID: req.ID, Error: control.EncodeError(fmt.Errorf("%w: subscribe: %v", control.ErrUsage, err))})
				continue
			}
			if c.subbed.Swap(true) {
				c.send(response{ID: req.ID, Error: control.EncodeError(fmt.Errorf("%w: already subscribed", control.ErrUsage))})
				continue
			}
			c.subs = sub.Devices
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.stream(connCtx, req.ID, sub)
			}()
			continue
		}
		c.send(c.handle(connCtx, req))
	}
}

func peerCred(uc *net.UnixConn) (*unix.Ucred, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// mayChange reports whether the peer may run commands that change state:
// root, or a member (primary or supplementary) of the configured group.
func (c *conn) mayChange() bool {
	if c.cred.Uid == 0 {
		return true
	}
	if c.s.gid < 0 {
		return false
	}
	if int(c.cred.Gid) == c.s.gid {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cred.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(g) {
				if n, err := strconv.Atoi(f); err == nil && n == c.s.gid {
					return true
				}
			}
		}
	}
	return false
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

// handle runs one request.
func (c *conn) handle(ctx context.Context, req request) response {
	resp := response{ID: req.ID}
	fail := func(err error) response {
		resp.Error = control.EncodeError(err)
		return resp
	}
	m, ok := control.Lookup(req.Method)
	if !ok {
		return fail(fmt.Errorf("%w: no command %q", control.ErrUsage, req.Method))
	}
	if m.Mutates && !c.mayChange() {
		return fail(fmt.Errorf("%w: %s changes state: only root and group %s may (you are uid %d)", syscall.EACCES, req.Method, c.s.cfg.Group, c.cred.Uid))
	}
	params := req.Params
	var claim control.ClaimReq
	if req.Method == "claim" || req.Method == "release" {
		if err := json.Unmarshal(params, &claim); err != nil {
			return fail(fmt.Errorf("%w: %v", control.ErrUsage, err))
		}
		if req.Method == "claim" {
			claim.PID = int(c.cred.Pid) // the claim dies with this connection
			params, _ = json.Marshal(claim)
		}
	}
	res, err := c.s.eng.Call(ctx, req.Method, params)
	resp.Result = res
	if err != nil {
		return fail(err)
	}
	switch req.Method {
	case "claim":
		var cr control.ClaimResp
		json.Unmarshal(res, &cr)
		claim.Device = cr.Device
		c.cmu.Lock()
		c.claims = append(c.claims, claim)
		c.cmu.Unlock()
	case "release":
		c.cmu.Lock()
		c.claims = slices.DeleteFunc(c.claims, func(x control.ClaimReq) bool { return x.Device == claim.Device })
		c.cmu.Unlock()
	case "pre-remove":
		var sr control.SeqResp
		json.Unmarshal(res, &sr)
		c.s.waitForHolders(ctx, sr.Seq)
	}
	return resp
}

// releaseClaims ends the claims of a closed connection.
func (c *conn) releaseClaims() {
	c.cmu.Lock()
	claims := c.claims
	c.claims = nil
	c.cmu.Unlock()
	for _, cl := range claims {
		p, _ := json.Marshal(control.ClaimReq{Device: cl.Device, Holder: cl.Holder})
		if _, err := c.s.eng.Call(context.Background(), "release", p); err != nil {
			c.s.cfg.Logf("daxstack: releasing %s for %s: %v", cl.Device, cl.Holder, err)
		}
	}
}

func (c *conn) holds() bool {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return len(c.claims) > 0
}

// stream sends a subscriber every logged event after sub.Since that
// concerns its devices: first those in the log, then each commit's.
func (c *conn) stream(ctx context.Context, id uint64, sub SubscribeReq) {
	since := sub.Since
	for {
		wake := c.s.wakeChan()
		for {
			p, _ := json.Marshal(control.EventsReq{Since: since, Devices: sub.Devices, Limit: 1024})
			res, err := c.s.eng.Call(ctx, "events", p)
			if err != nil {
				c.send(response{ID: id, Error: control.EncodeError(err)})
				return
			}
			var page control.EventsResp
			if err := json.Unmarshal(res, &page); err != nil {
				return
			}
			for i := range page.Events {
				ev := page.Events[i]
				if err := c.send(response{ID: id, Event: &ev}); err != nil {
					return
				}
				since = ev.Seq
			}
			if len(page.Events) < 1024 {
				since = max(since, page.Last)
				break
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) ackChanged() {
	s.mu.Lock()
	close(s.acked)
	s.acked = make(chan struct{})
	s.mu.Unlock()
}

// waitForHolders waits (at most AckTimeout) until every subscribed
// connection that holds a claim has acknowledged events up to seq: a
// pre-remove must reach the holders before the removal goes on.
func (s *Server) waitForHolders(ctx context.Context, seq uint64) {
	deadline := time.NewTimer(s.cfg.AckTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		pending := 0
		for c := range s.conns {
			if c.subbed.Load() && c.holds() && c.acked.Load() < seq {
				pending++
			}
		}
		acked := s.acked
		s.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-acked:
		case <-deadline.C:
			s.cfg.Logf("daxstack: pre-remove: %d holder(s) did not acknowledge event %d in %v", pending, seq, s.cfg.AckTimeout)
			return
		case <-ctx.Done():
			return
		}
	}
}
