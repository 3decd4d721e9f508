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
	"github.com/daxstack/daxstack/stack"
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
	// UeventRcvBuf is the uevent socket's receive buffer in bytes (zero:
	// uevent.DefaultRcvBuf). Tests shrink it to provoke overruns.
	UeventRcvBuf int
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

	recent recentEvents // the latest committed events, for streams that keep up

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
	eng.Listen(func(evs []rmapchain.Event) {
		s.recent.add(evs) // before the wake-up, so that woken streams find them
		s.broadcast()
	})
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
	subbed atomic.Bool

	// Delivery state of a subscription, for pre-remove waits.
	amu     sync.Mutex
	acked   uint64   // the client handled every event up to here
	pos     uint64   // the stream has read the log up to here
	unacked []uint64 // pre-remove events sent and not acknowledged yet
}

// maxUnacked bounds the pre-remove events remembered for a client that
// never acknowledges; the oldest are forgotten (and no longer waited for).
const maxUnacked = 1024

// ack records that the client handled every event up to seq.
func (c *conn) ack(seq uint64) {
	c.amu.Lock()
	defer c.amu.Unlock()
	c.acked = max(c.acked, seq)
	c.unacked = slices.DeleteFunc(c.unacked, func(q uint64) bool { return q <= c.acked })
}

// sending records that the pre-remove event seq is about to be sent.
func (c *conn) sending(seq uint64) {
	c.amu.Lock()
	defer c.amu.Unlock()
	if seq > c.acked {
		if len(c.unacked) >= maxUnacked {
			c.unacked = c.unacked[1:]
		}
		c.unacked = append(c.unacked, seq)
	}
}

// advance records that the stream has read the log up to seq.
func (c *conn) advance(seq uint64) {
	c.amu.Lock()
	c.pos = max(c.pos, seq)
	c.amu.Unlock()
}

// handled reports whether the subscriber is done with event seq: it
// acknowledged it, or its stream went past it without sending it (the
// event is not for its devices).
func (c *conn) handled(seq uint64) bool {
	c.amu.Lock()
	defer c.amu.Unlock()
	return c.acked >= seq || (c.pos >= seq && !slices.Contains(c.unacked, seq))
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
		// A claim ends when its client goes away, not when the daemon
		// stops: the claim stays recorded (with the holder's PID) for the
		// next daemon, and the holder claims it again when it reconnects.
		if ctx.Err() == nil {
			c.releaseClaims()
		}
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
			c.ack(*req.Ack)
			s.ackChanged()
			continue
		}
		if req.Method == "subscribe" {
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

// subscribe checks a subscription request and, for a holder, claims its
// devices for this connection; the stream then follows the devices by the
// names events give them.
func (c *conn) subscribe(ctx context.Context, req request) (SubscribeReq, error) {
	var sub SubscribeReq
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &sub); err != nil {
			return sub, fmt.Errorf("%w: subscribe: %v", control.ErrUsage, err)
		}
	}
	if c.subbed.Load() {
		return sub, fmt.Errorf("%w: already subscribed", control.ErrUsage)
	}
	if sub.Holder != "" {
		if len(sub.Devices) == 0 {
			return sub, fmt.Errorf("%w: subscribe: a holder must name the devices it claims", control.ErrUsage)
		}
		if err := c.mayCall("claim"); err != nil {
			return sub, err
		}
		var made []control.ClaimReq
		for i, dev := range sub.Devices {
			cl, err := c.claim(ctx, control.ClaimReq{Device: dev, Holder: sub.Holder})
			if err != nil {
				for _, m := range made {
					c.release(m)
				}
				return sub, err
			}
			made = append(made, cl)
			sub.Devices[i] = cl.Device
		}
	} else if len(sub.Devices) > 0 {
		// Follow the devices by the names events give them (a watcher
		// may say /dev/mapper/top, 0:1 or a leaf's path).
		p, _ := json.Marshal(control.NamesReq{Names: sub.Devices})
		res, err := c.s.eng.Call(ctx, "canonical", p)
		if err != nil {
			return sub, err
		}
		if err := json.Unmarshal(res, &sub.Devices); err != nil {
			return sub, err
		}
	}
	c.amu.Lock()
	c.pos = sub.Since
	c.amu.Unlock()
	c.subbed.Store(true)
	return sub, nil
}

// mayCall refuses a method that changes state to a peer that may not.
func (c *conn) mayCall(method string) error {
	m, ok := control.Lookup(method)
	if !ok || !m.Mutates || c.mayChange() {
		return nil
	}
	who := "root"
	if c.s.cfg.Group != "" {
		who = "root and group " + c.s.cfg.Group
	}
	return fmt.Errorf("%w: %s changes state, which only %s may do (you are uid %d)", syscall.EACCES, method, who, c.cred.Uid)
}

// claim claims a device for this connection: the claim carries the peer's
// PID and ends when the connection does.
func (c *conn) claim(ctx context.Context, cl control.ClaimReq) (control.ClaimReq, error) {
	cl.PID = int(c.cred.Pid)
	p, _ := json.Marshal(cl)
	res, err := c.s.eng.Call(ctx, "claim", p)
	if err != nil {
		return cl, err
	}
	var cr control.ClaimResp
	if err := json.Unmarshal(res, &cr); err != nil {
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
	p, _ := json.Marshal(control.ClaimReq{Device: cl.Device, Holder: cl.Holder})
	// Not held any more (the holder released it itself just before it
	// went away) is what this release wanted.
	if _, err := c.s.eng.Call(context.Background(), "release", p); err != nil && !errors.Is(err, stack.ErrNotFound) {
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
	if _, ok := control.Lookup(req.Method); !ok {
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
	res, err := c.s.eng.Call(ctx, req.Method, req.Params)
	resp.Result = res
	if err != nil {
		return fail(err)
	}
	switch req.Method {
	case "release":
		var cl control.ClaimReq
		json.Unmarshal(req.Params, &cl)
		c.s.forgetClaim(strings.TrimPrefix(cl.Device, "/dev/mapper/"))
	case "pre-remove":
		var pr control.PreRemoveResp
		json.Unmarshal(res, &pr)
		c.s.waitForHolders(ctx, pr.Events)
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
		c.release(cl)
	}
}

// holdsFor reports whether the connection claims device.
func (c *conn) holdsFor(device string) bool {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return slices.ContainsFunc(c.claims, func(x control.ClaimReq) bool { return x.Device == device })
}

// stream sends a subscriber every logged event after sub.Since that
// concerns its devices: first those in the log, then each commit's. A
// stream that keeps up takes committed events from memory (recent); one
// that is behind (it resumed from an old SEQ, or fell behind by more than
// recent holds) reads the log, which stays the source of truth.
func (c *conn) stream(ctx context.Context, id uint64, sub SubscribeReq) {
	since := sub.Since
	send := func(ev rmapchain.Event) bool {
		if ev.Kind == rmapchain.PreRemove {
			c.sending(ev.Seq)
		}
		if err := c.send(response{ID: id, Event: &ev}); err != nil {
			return false
		}
		c.advance(ev.Seq)
		return true
	}
	for {
		wake := c.s.wakeChan()
		if evs, next, ok := c.s.recent.after(since, sub.Devices); ok {
			for _, ev := range evs {
				if !send(ev) {
					return
				}
			}
			since = next
			c.advance(since)
		} else {
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
				for _, ev := range page.Events {
					if !send(ev) {
						return
					}
					since = ev.Seq
				}
				if len(page.Events) < 1024 {
					since = max(since, page.Last)
					c.advance(since)
					break
				}
			}
		}
		c.s.ackChanged() // the stream moved: pre-remove waits look again
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// recentEvents keeps the events of the latest commits, with consecutive
// sequence numbers, as the engine's listener hands them over after each
// commit, so that streams that keep up need neither the engine's lock nor
// a read of the log.
type recentEvents struct {
	mu  sync.Mutex
	evs []rmapchain.Event
}

// recentMax bounds recentEvents; a stream further behind reads the log.
const recentMax = 4096

// add appends a commit's events. Anything but the next sequence numbers
// (which the daemon, the only writer, never commits) starts over.
func (r *recentEvents) add(evs []rmapchain.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		if n := len(r.evs); n > 0 && ev.Seq != r.evs[n-1].Seq+1 {
			r.evs = r.evs[:0]
		}
		r.evs = append(r.evs, ev)
	}
	if len(r.evs) > recentMax {
		r.evs = slices.Clone(r.evs[len(r.evs)-recentMax/2:])
	}
}

// after returns the events after since that concern devices (all when
// empty) and the sequence number to resume from, if it holds every event
// after since; ok is false when the log must be read instead.
func (r *recentEvents) after(since uint64, devices []string) (evs []rmapchain.Event, next uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.evs) == 0 || since+1 < r.evs[0].Seq {
		return nil, since, false
	}
	last := r.evs[len(r.evs)-1].Seq
	if since >= last {
		return nil, since, true
	}
	for _, ev := range r.evs[since+1-r.evs[0].Seq:] {
		if len(devices) == 0 || slices.Contains(devices, ev.Device) {
			evs = append(evs, ev)
		}
	}
	return evs, last, true
}

// holderStreams returns the streams that carry device's events to its
// holder: the subscribed connections that claimed it, or, when the claim
// was made on a connection that does not stream (a program that claims on
// one connection and subscribes on another), the subscribed connections
// of the claiming process. Called with s.mu held.
func (s *Server) holderStreams(device string) []*conn {
	var out []*conn
	pids := map[int32]bool{}
	for c := range s.conns {
		if c.holdsFor(device) {
			if c.subbed.Load() {
				out = append(out, c)
			}
			pids[c.cred.Pid] = true
		}
	}
	if len(out) > 0 || len(pids) == 0 {
		return out
	}
	for c := range s.conns {
		if pids[c.cred.Pid] && c.subbed.Load() {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) ackChanged() {
	s.mu.Lock()
	close(s.acked)
	s.acked = make(chan struct{})
	s.mu.Unlock()
}

// waitForHolders waits (at most AckTimeout) until the holder of every
// device a pre-remove event was logged for has handled that event: a
// pre-remove must reach the holders before the removal goes on. Holders
// of other devices, and watchers, are not waited for (see holderStreams).
func (s *Server) waitForHolders(ctx context.Context, evs []rmapchain.Event) {
	if len(evs) == 0 {
		return
	}
	deadline := time.NewTimer(s.cfg.AckTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		var pending []string
		for _, ev := range evs {
			for _, c := range s.holderStreams(ev.Device) {
				if !c.handled(ev.Seq) {
					pending = append(pending, fmt.Sprintf("%s (event %d, pid %d)", ev.Device, ev.Seq, c.cred.Pid))
				}
			}
		}
		acked := s.acked
		s.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		select {
		case <-acked:
		case <-deadline.C:
			s.cfg.Logf("daxstack: pre-remove: no acknowledgement within %v from the holder of %s", s.cfg.AckTimeout, strings.Join(pending, ", "))
			return
		case <-ctx.Done():
			return
		}
	}
}
