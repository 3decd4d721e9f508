package nbdleaf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/daxstack/daxstack/extent"
)

// Defaults of the Opener's settings.
const (
	DefaultConns       = 2
	MaxConns           = 4
	DefaultPoll        = time.Second
	DefaultGrace       = 5 * time.Second
	DefaultDialTimeout = 5 * time.Second
	DefaultIOTimeout   = 30 * time.Second
)

// Opener opens NBD leaves; its settings apply to every leaf it opens. The
// zero Opener is usable: two connections per leaf where the server allows
// more than one, badblocks polled every second, lost after five seconds
// without a connection.
type Opener struct {
	// TLSConfig is used for nbds:// URIs (NBD_OPT_STARTTLS, then
	// crypto/tls): RootCAs to verify the server, Certificates for a
	// client certificate. ClientTLS builds one from files. ServerName
	// defaults to the URI's host ("localhost" for a unix socket).
	TLSConfig *tls.Config
	// Conns is the number of connections a leaf keeps to a server that
	// advertises NBD_FLAG_CAN_MULTI_CONN (0: DefaultConns; at most
	// MaxConns). A server that does not gets one: without that flag a
	// flush on one connection says nothing of writes made on another.
	Conns int
	// Poll is how often the bad ranges of a server that offers the
	// daxstack:badblocks meta context are read (0: DefaultPoll; negative:
	// never). The daemon's --nbd-poll.
	Poll time.Duration
	// Grace is how long a leaf may be without any connection before it
	// is lost (0: DefaultGrace). The daemon's --nbd-grace.
	Grace time.Duration
	// DialTimeout bounds one connection attempt: dialling and the
	// handshake (0: DefaultDialTimeout).
	DialTimeout time.Duration
	// IOTimeout bounds one request: a connection that leaves a request
	// unanswered that long is dropped and the request sent again on
	// another (0: DefaultIOTimeout, the kernel nbd driver's).
	IOTimeout time.Duration
	// OnPoison, if set, hears every change of a leaf's poison list:
	// sectors found bad by reads or writes the server kept failing,
	// sectors a write cleared, and the changes a poll of the server's
	// daxstack:badblocks finds. It is called from the goroutine that made
	// the change (an I/O, or the poller) with no lock of the leaf held.
	OnPoison func(l *Leaf, added, cleared extent.Set)
	// OnLost, if set, hears a leaf become lost (lost true; why is a
	// *LostError's reason: ErrDisconnected after the grace period, or an
	// *IdentityError when another export answers) and come back (lost
	// false, why nil: a connection to the same export again). It is
	// called with no lock of the leaf held. SetLost does not call it.
	OnLost func(l *Leaf, lost bool, why error)
	// Log hears what is worth a line: reconnections, failures a retry
	// cured, losses. Nil: slog.Default().
	Log *slog.Logger
}

// settings are an Opener's with the defaults filled in.
type settings struct {
	tls                          *tls.Config
	conns                        int
	poll, grace, dial, ioTimeout time.Duration
	onPoison                     func(*Leaf, extent.Set, extent.Set)
	onLost                       func(*Leaf, bool, error)
	log                          *slog.Logger
}

func (o *Opener) settings() settings {
	s := settings{tls: o.TLSConfig, conns: o.Conns, poll: o.Poll, grace: o.Grace, dial: o.DialTimeout,
		ioTimeout: o.IOTimeout, onPoison: o.OnPoison, onLost: o.OnLost, log: o.Log}
	if s.conns <= 0 {
		s.conns = DefaultConns
	}
	s.conns = min(s.conns, MaxConns)
	if s.poll == 0 {
		s.poll = DefaultPoll
	}
	if s.grace <= 0 {
		s.grace = DefaultGrace
	}
	if s.dial <= 0 {
		s.dial = DefaultDialTimeout
	}
	if s.ioTimeout <= 0 {
		s.ioTimeout = DefaultIOTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Open dials the export ref names (an NBD URI, see Canonical) and returns
// its leaf, with the identity found: this is how a leaf a table names for
// the first time learns its size. The connection made is the leaf's
// first; ctx bounds the dial and handshake only. as, if not nil, is the
// peer on whose behalf the daemon opens the leaf: every connection to a
// unix socket is then made with the peer's credentials (see DialAs).
func (o *Opener) Open(ctx context.Context, ref string, as *Cred) (*Leaf, error) {
	u, err := parse(ref)
	if err != nil {
		return nil, err
	}
	l := o.newLeaf(Identity{Kind: Kind, URI: u.String(), Size: -1}, as)
	if u.TLS && o.TLSConfig == nil {
		l.Close()
		return nil, leafError(l.name, ErrTLS)
	}
	c, err := l.dial(ctx)
	if err != nil {
		l.Close()
		return nil, leafError(l.name, err)
	}
	info := c.info
	l.setIdentity(Identity{Kind: Kind, URI: l.ref, Size: info.Size, Description: info.Description})
	l.mu.Lock()
	l.startLocked(c)
	l.mu.Unlock()
	return l, nil
}

// Lazy returns the leaf of a recorded identity without dialling: its size
// is the recorded one, and the first I/O (or Watch) dials. A server that
// answers with another export (IdentityError) is not used: the leaf is
// lost, with that reason, until the recorded export answers again. This is
// how a process that only lists or prints tables opens remote leaves
// without waiting on any server.
func (o *Opener) Lazy(id Identity, as *Cred) (*Leaf, error) {
	if id.Kind != Kind || id.Size < 0 {
		return nil, fmt.Errorf("nbdleaf: not an NBD identity: %+v", id)
	}
	u, err := parse(id.URI)
	if err != nil {
		return nil, err
	}
	id.URI = u.String()
	l := o.newLeaf(id, as)
	if u.TLS && o.TLSConfig == nil {
		l.Close()
		return nil, leafError(l.name, ErrTLS)
	}
	return l, nil
}

// ClientTLS builds the TLS configuration of nbds:// leaves from the same
// files the daemon's server side takes: certFile and keyFile, the client
// certificate a server that verifies its clients wants (both or neither),
// and caFile, the CA that signed the servers' certificates (empty: the
// system's roots).
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("nbdleaf: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("nbdleaf: a client certificate needs both its certificate and its key")
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("nbdleaf: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nbdleaf: CA: no certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
