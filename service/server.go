package service

import (
	"context"
	"errors"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/export/serve"
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
	// UeventRcvBuf is the uevent socket's receive buffer in bytes (zero:
	// uevent.DefaultRcvBuf). Tests shrink it to provoke overruns.
	UeventRcvBuf int
	// Logf logs daemon activity (log.Printf if nil).
	Logf func(format string, args ...any)
	// Exports, if set, exports every live mapped device while the daemon
	// serves (device files, block devices, NBD; see export/serve). Its
	// Group and Logf are the daemon's.
	Exports *serve.Options
}

// ErrRunning: another daemon is listening on the socket.
var ErrRunning = errors.New("a daxstack daemon is already running on this socket")

// Server is a running daemon.
type Server struct {
	cfg Config
	eng *control.Engine
	gid int // group allowed to change state; -1: none

	recent recentEvents // the latest committed events, for streams that keep up
	files  filesState   // files behind bad ranges (files.go)

	mu    sync.Mutex
	wake  chan struct{} // closed and replaced whenever events are committed
	conns map[*conn]bool
	acked chan struct{} // closed and replaced whenever a client acks
	wg    sync.WaitGroup

	exports atomic.Pointer[serve.Exports] // while Serve runs with Config.Exports
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

// BlockDevice returns the block device (major, minor) that exports the
// mapped device name while the daemon serves it: the device a filesystem
// mounted on /dev/daxstack/NAME is mounted from. ok is false without
// exports, or for a device without a block device.
func (s *Server) BlockDevice(name string) (major, minor uint32, ok bool) {
	return s.exports.Load().BlockDevice(name)
}

// Exports returns the running exports (nil unless Serve runs with
// Config.Exports).
func (s *Server) Exports() *serve.Exports { return s.exports.Load() }

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
	defer s.files.close()
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
	if _, err := s.eng.Rescan(ctx); err != nil {
		s.cfg.Logf("daxstack: initial rescan: %v", err)
	}
	if s.cfg.Exports != nil {
		o := *s.cfg.Exports
		o.Group, o.Logf = s.gid, s.cfg.Logf
		x, err := serve.Start(s.eng, o)
		if err != nil {
			ln.Close()
			os.Remove(s.cfg.Socket)
			return err
		}
		s.exports.Store(x)
		defer func() {
			s.exports.Store(nil)
			if err := x.Close(); err != nil {
				s.cfg.Logf("daxstack: closing exports: %v", err)
			}
		}()
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
