package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server serves the exports of an Exports directory over NBD, fixed
// newstyle. Its fields are its configuration: set them before the first
// Serve and leave them alone after. One Server may serve several
// listeners at once (Serve from several goroutines); a daemon that wants
// different TLS rules on its unix socket and its TCP port runs one Server
// per rule over the same Exports.
type Server struct {
	// Exports is the directory of exports; required.
	Exports Exports

	// TLSConfig enables NBD_OPT_STARTTLS. For x509 with verified client
	// certificates set Certificates, ClientCAs and ClientAuth:
	// tls.RequireAndVerifyClientCert. Nil: the server refuses STARTTLS
	// with NBD_REP_ERR_POLICY (NOTLS mode).
	TLSConfig *tls.Config
	// RequireTLS is the spec's FORCEDTLS mode: before TLS every option
	// but STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD, and
	// NBD_OPT_EXPORT_NAME ends the session. It needs TLSConfig.
	RequireTLS bool

	// Authorize, if set, is asked about every accepted connection before
	// a byte is sent; an error closes it. (Exports.Open is asked about
	// every export the peer names, with the TLS state once there is one.)
	Authorize func(*Peer) error

	// MaxConnections bounds the connections served at once (default
	// 256); one more is closed as soon as it is accepted.
	MaxConnections int
	// MaxInFlight bounds the requests of one connection being served at
	// once (default 64); MaxInFlightBytes bounds their payloads (default
	// 32 MiB; one request of any allowed size may always run). The
	// connection stops reading requests while at a bound.
	MaxInFlight      int
	MaxInFlightBytes int
	// MaxPayload caps the maximum payload advertised to clients (default
	// and at most DefaultMaxPayload).
	MaxPayload uint32

	// HandshakeTimeout bounds the handshake, TLS included (default 10 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds the wait for a peer to take a reply (default
	// 1 min): a peer that reads nothing for that long is dropped.
	WriteTimeout time.Duration
	// ShutdownGrace is how long, after Serve's context ends, connections
	// have to finish: requests in flight complete, later ones are
	// answered NBD_ESHUTDOWN, then the connection is closed (default 2 s).
	ShutdownGrace time.Duration

	// Log receives the server's diagnostics; nil discards them.
	Log *slog.Logger
}

func (s *Server) maxConnections() int { return orDefault(s.MaxConnections, 256) }
func (s *Server) maxInFlight() int    { return orDefault(s.MaxInFlight, 64) }
func (s *Server) maxInFlightBytes() int {
	return orDefault(s.MaxInFlightBytes, 32<<20)
}
func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, 10*time.Second)
}
func (s *Server) writeTimeout() time.Duration  { return orDefault(s.WriteTimeout, time.Minute) }
func (s *Server) shutdownGrace() time.Duration { return orDefault(s.ShutdownGrace, 2*time.Second) }
func (s *Server) maxPayload() uint32 {
	if s.MaxPayload == 0 || s.MaxPayload > DefaultMaxPayload {
		return DefaultMaxPayload
	}
	return s.MaxPayload
}

func orDefault[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) check() error {
	if s.Exports == nil {
		return errors.New("nbd: Server.Exports is nil")
	}
	if s.RequireTLS && s.TLSConfig == nil {
		return errors.New("nbd: Server.RequireTLS without a TLSConfig")
	}
	return nil
}

// Serve accepts connections on l and serves each in its own goroutine
// until ctx ends; then it closes l, lets every connection finish as
// ShutdownGrace says, and returns nil once all have ended. It returns an
// error if l fails for another reason (after ending its connections the
// same way).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if err := s.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, s.maxConnections())
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			cancel()
			return fmt.Errorf("nbd: accept: %w", err)
		}
		delay = 0
		select {
		case slots <- struct{}{}:
		default:
			s.logger().Warn("nbd: too many connections, refusing one", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.serveConn(ctx, c)
		}()
	}
}

// ServeConn serves one connection until it ends or ctx does (with the
// grace of Serve) and closes it. The error says why the session ended;
// nil for a client that disconnected as the spec asks.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	if err := s.check(); err != nil {
		c.Close()
		return err
	}
	return s.serveConn(ctx, c)
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) (err error) {
	sc := newServerConn(s, c)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("nbd: internal error: %v", r)
			s.logger().Error("nbd: connection panicked", "remote", c.RemoteAddr(), "panic", r)
			sc.conn.Close()
			c.Close()
		}
	}()
	stop := context.AfterFunc(ctx, sc.beginShutdown)
	defer stop()
	err = sc.serve()
	if err != nil {
		s.logger().Debug("nbd: session ended", "remote", c.RemoteAddr(), "err", err)
	}
	return err
}
