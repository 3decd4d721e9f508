package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Options configure a client connection.
type Options struct {
	// Export names the export; Dial takes it from the URI instead.
	Export string
	// TLSConfig is used for NBD_OPT_STARTTLS, which is sent first and
	// must succeed when the URI is nbds:// (or TLS is set for DialConn).
	// For x509 with a client certificate set Certificates and RootCAs;
	// ServerName defaults to the URI's host (or "localhost" for a unix
	// socket).
	TLSConfig *tls.Config
	// MetaContexts are selected with NBD_OPT_SET_META_CONTEXT (full
	// names, such as BaseAllocation); Info().MetaContexts says which the
	// server has.
	MetaContexts []string
	// NoStructuredReplies leaves structured replies unnegotiated (simple
	// replies only: no block status, no error offsets).
	NoStructuredReplies bool
	// MaxInFlight bounds the requests of the connection in flight at
	// once (default 64); more wait for a slot.
	MaxInFlight int
}

// Info is what the handshake told of the export.
type Info struct {
	Name         string // canonical name if the server sent one, else the one asked for
	Description  string
	Size         int64
	Flags        Flags
	BlockSizes   BlockSizes // the server's, or the defaults if it sent none
	Structured   bool       // structured replies negotiated
	MetaContexts []string   // the contexts the server selected
	TLS          bool
}

// Client is one connection to an export, in the transmission phase. Its
// methods may be called from many goroutines at once: each request is
// sent as soon as there is a slot and replies are matched by cookie, so
// requests overlap on the wire. When the connection dies every request in
// flight and every later one fails with an error matching ErrClosed, and
// Done is closed (Err says why): a pool can watch Done to redial.
type Client struct {
	raw  net.Conn
	conn net.Conn
	br   *bufio.Reader
	info Info
	meta map[uint32]string // context ID -> name

	wmu sync.Mutex // serialises sending

	mu      sync.Mutex
	pending map[uint64]*call
	cookie  uint64
	closing bool

	slots chan struct{}
	done  chan struct{}
	err   error // why it died, set before done is closed
	once  sync.Once
	rdone chan struct{} // the reader has returned

	shutdownOnce sync.Once
	rscratch     [36]byte // the reader's: chunk fields, reply header
}

// Dial connects to the export an NBD URI names and runs the handshake;
// ctx bounds dialling and the handshake only.
func Dial(ctx context.Context, uri string, opt Options) (*Client, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return DialURI(ctx, u, opt)
}

// DialURI is Dial of a parsed URI.
func DialURI(ctx context.Context, u *URI, opt Options) (*Client, error) {
	conn, err := dialRaw(ctx, u, &opt)
	if err != nil {
		return nil, err
	}
	opt.Export = u.Export
	return NewClient(ctx, conn, u.TLS, opt)
}

func dialRaw(ctx context.Context, u *URI, opt *Options) (net.Conn, error) {
	if u.TLS && opt.TLSConfig == nil {
		return nil, fmt.Errorf("nbd: %s needs a TLS configuration: %w", u, ErrUnsupported)
	}
	if u.TLS && opt.TLSConfig.ServerName == "" && !opt.TLSConfig.InsecureSkipVerify {
		cfg := opt.TLSConfig.Clone()
		cfg.ServerName = "localhost"
		if u.Network == "tcp" {
			if h, _, err := net.SplitHostPort(u.Address); err == nil {
				cfg.ServerName = h
			}
		}
		opt.TLSConfig = cfg
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, u.Network, u.Address)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return conn, nil
}

// NewClient runs the handshake on conn (TLS first if useTLS) and returns
// the client; on failure conn is closed.
func NewClient(ctx context.Context, conn net.Conn, useTLS bool, opt Options) (*Client, error) {
	c := &Client{raw: conn, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err := c.handshake(ctx, useTLS, opt)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		var oe *optionError
		if errors.As(err, &oe) {
			// The server answered; the stream is in step. The spec
			// wants a soft disconnect: NBD_OPT_ABORT.
			c.abort()
		}
		c.conn.Close()
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	c.pending = map[uint64]*call{}
	c.slots = make(chan struct{}, orDefault(opt.MaxInFlight, 64))
	c.done = make(chan struct{})
	c.rdone = make(chan struct{})
	go c.reader()
	return c, nil
}

// abort sends NBD_OPT_ABORT and waits a moment for its reply.
func (c *Client) abort() {
	c.raw.SetDeadline(time.Now().Add(time.Second))
	if c.sendOption(optAbort, nil) == nil {
		c.readReply(optAbort)
	}
}

// Info returns what the handshake told of the export.
func (c *Client) Info() Info { return c.info }

// Done is closed when the connection has died or was closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended, once Done is closed (ErrClosed
// wrapping the cause; after Close, ErrClosed alone).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// die ends the connection: every pending request fails with err.
func (c *Client) die(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.closing = true
		pending := c.pending
		c.pending = map[uint64]*call{}
		c.mu.Unlock()
		close(c.done)
		c.conn.Close()
		c.raw.Close()
		for _, cl := range pending {
			cl.finish(err)
		}
	})
}

// Close waits (a few seconds at most) for requests in flight, sends
// NBD_CMD_DISC, shuts TLS down and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	c.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-c.done:
			return nil
		case <-time.After(time.Millisecond):
		}
	}
	var h [requestHeaderLen]byte
	putRequestHeader(h[:], 0, cmdDisc, 0, 0, 0)
	c.wmu.Lock()
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.conn.Write(h[:])
	c.wmu.Unlock()
	c.die(ErrClosed)
	<-c.rdone
	return nil
}
