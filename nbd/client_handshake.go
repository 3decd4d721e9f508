package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// The client's side of the handshake: fixed newstyle, STARTTLS first when
// asked, structured replies, meta contexts, then NBD_OPT_GO with
// NBD_INFO_BLOCK_SIZE (falling back to NBD_OPT_EXPORT_NAME on a server
// without NBD_OPT_GO).

// optionError is an error reply to an option.
type optionError struct {
	opt, rep uint32
	msg      string
}

func (e *optionError) Error() string {
	s := fmt.Sprintf("nbd: server refused option %d with reply %#x", e.opt, e.rep)
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

// Unwrap maps the reply to this package's sentinels.
func (e *optionError) Unwrap() error {
	switch e.rep {
	case repErrUnknown:
		return ErrUnknownExport
	case repErrPolicy:
		return ErrDenied
	case repErrTLSReqd:
		return ErrTLSRequired
	case repErrShutdown:
		return ErrShutdown
	case repErrUnsup, repErrPlatform:
		return ErrUnsupported
	}
	return ErrProtocol
}

func (c *Client) greet() (noZeroes bool, err error) {
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:16]); err != nil {
		return false, fmt.Errorf("nbd: reading the greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(g[0:]); m != nbdMagic {
		return false, fmt.Errorf("%w: not an NBD server (magic %#x)", ErrProtocol, m)
	}
	switch m := binary.BigEndian.Uint64(g[8:]); m {
	case ihaveopt:
	case cliservMagic:
		return false, fmt.Errorf("nbd: the server speaks oldstyle negotiation: %w", ErrUnsupported)
	default:
		return false, fmt.Errorf("%w: bad greeting magic %#x", ErrProtocol, m)
	}
	if _, err := io.ReadFull(c.br, g[16:18]); err != nil {
		return false, fmt.Errorf("nbd: reading handshake flags: %w", err)
	}
	gflags := binary.BigEndian.Uint16(g[16:])
	if gflags&flagFixedNewstyle == 0 {
		return false, fmt.Errorf("nbd: the server does not speak fixed newstyle: %w", ErrUnsupported)
	}
	cflags := uint32(flagCFixedNewstyle)
	if gflags&flagNoZeroes != 0 {
		cflags |= flagCNoZeroes
		noZeroes = true
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], cflags)
	if _, err := c.conn.Write(b[:]); err != nil {
		return false, fmt.Errorf("nbd: sending client flags: %w", err)
	}
	return noZeroes, nil
}

func (c *Client) handshake(ctx context.Context, useTLS bool, opt Options) error {
	noZeroes, err := c.greet()
	if err != nil {
		return err
	}
	if useTLS {
		if err := c.startTLS(ctx, opt.TLSConfig); err != nil {
			return err
		}
	}
	if !opt.NoStructuredReplies {
		rep, _, err := c.option(optStructuredReply, nil)
		switch {
		case err != nil:
			return err
		case rep == repAck:
			c.info.Structured = true
		case rep == repErrTLSReqd:
			return fmt.Errorf("nbd: structured replies: %w", ErrTLSRequired)
		}
	}
	c.meta = map[uint32]string{}
	if len(opt.MetaContexts) > 0 && c.info.Structured {
		if err := c.setMeta(opt.Export, opt.MetaContexts); err != nil {
			return err
		}
	}
	gone, err := c.goExport(opt.Export)
	if err != nil {
		return err
	}
	if !gone {
		return c.exportName(opt.Export, noZeroes)
	}
	return nil
}

func (c *Client) startTLS(ctx context.Context, cfg *tls.Config) error {
	if cfg == nil {
		return fmt.Errorf("nbd: TLS asked without a TLS configuration: %w", ErrUnsupported)
	}
	rep, msg, err := c.option(optStartTLS, nil)
	if err != nil {
		return err
	}
	if rep != repAck {
		return fmt.Errorf("nbd: the server refused STARTTLS: %w", &optionError{optStartTLS, rep, msg})
	}
	tc := tls.Client(&bufferedConn{Conn: c.conn, r: c.br}, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	c.conn = tc
	c.br = bufio.NewReaderSize(tc, 64<<10)
	c.info.TLS = true
	return nil
}

// sendOption sends an option with its data.
func (c *Client) sendOption(opt uint32, data []byte) error {
	b := make([]byte, 0, optionHeaderLen+len(data))
	b = binary.BigEndian.AppendUint64(b, ihaveopt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("nbd: sending option %d: %w", opt, err)
	}
	return nil
}

// readReply reads one option reply to opt.
func (c *Client) readReply(opt uint32) (rep uint32, payload []byte, err error) {
	var h [optionReplyHeaderLen]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading the reply to option %d: %w", opt, err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != repMagic {
		return 0, nil, fmt.Errorf("%w: option reply magic %#x", ErrProtocol, m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return 0, nil, fmt.Errorf("%w: reply to option %d while waiting for %d", ErrProtocol, o, opt)
	}
	rep = binary.BigEndian.Uint32(h[12:])
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxReplyLen {
		return 0, nil, fmt.Errorf("%w: option reply of %d bytes", ErrProtocol, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading the reply to option %d: %w", opt, err)
	}
	return rep, payload, nil
}

// option sends an option that has one reply and returns it (an error
// reply's message as msg).
func (c *Client) option(opt uint32, data []byte) (rep uint32, msg string, err error) {
	if err := c.sendOption(opt, data); err != nil {
		return 0, "", err
	}
	rep, payload, err := c.readReply(opt)
	if err != nil {
		return 0, "", err
	}
	if rep&repFlagError != 0 {
		return rep, sanitize(payload), nil
	}
	if rep != repAck || len(payload) != 0 {
		return 0, "", fmt.Errorf("%w: unexpected reply %d to option %d", ErrProtocol, rep, opt)
	}
	return rep, "", nil
}

func (c *Client) setMeta(export string, queries []string) error {
	if err := c.sendOption(optSetMetaContext, appendMetaRequest(nil, export, queries)); err != nil {
		return err
	}
	for n := 0; ; n++ {
		rep, p, err := c.readReply(optSetMetaContext)
		if err != nil {
			return err
		}
		switch {
		case rep == repAck:
			return nil
		case rep == repMetaContext && len(p) >= 4 && n < 1024:
			id := binary.BigEndian.Uint32(p)
			name := string(p[4:])
			if _, dup := c.meta[id]; dup || !validString(name) {
				return fmt.Errorf("%w: bad meta context reply %q (id %d)", ErrProtocol, name, id)
			}
			c.meta[id] = name
			c.info.MetaContexts = append(c.info.MetaContexts, name)
		case rep == repErrUnsup:
			clear(c.meta)
			c.info.MetaContexts = nil
			return nil
		case rep&repFlagError != 0:
			return fmt.Errorf("nbd: selecting meta contexts: %w", &optionError{optSetMetaContext, rep, sanitize(p)})
		default:
			return fmt.Errorf("%w: unexpected reply %d to NBD_OPT_SET_META_CONTEXT", ErrProtocol, rep)
		}
	}
}

// goExport sends NBD_OPT_GO; false if the server does not know it.
func (c *Client) goExport(export string) (bool, error) {
	data := appendInfoRequest(nil, export, infoBlockSize, infoName, infoDescription)
	if err := c.sendOption(optGo, data); err != nil {
		return false, err
	}
	c.info.Name = export
	haveExport := false
	for n := 0; ; n++ {
		rep, p, err := c.readReply(optGo)
		if err != nil {
			return false, err
		}
		switch {
		case rep == repAck:
			if !haveExport {
				return false, fmt.Errorf("%w: NBD_OPT_GO acknowledged without NBD_INFO_EXPORT", ErrProtocol)
			}
			return true, c.checkInfo()
		case rep == repInfo && n < 64:
			if len(p) < 2 {
				return false, fmt.Errorf("%w: short NBD_REP_INFO", ErrProtocol)
			}
			switch t := binary.BigEndian.Uint16(p); t {
			case infoExport:
				if len(p) != 12 {
					return false, fmt.Errorf("%w: NBD_INFO_EXPORT of %d bytes", ErrProtocol, len(p))
				}
				c.info.Size = int64(binary.BigEndian.Uint64(p[2:]))
				c.info.Flags = Flags(binary.BigEndian.Uint16(p[10:]))
				haveExport = true
			case infoName:
				if s := string(p[2:]); validString(s) {
					c.info.Name = s
				}
			case infoDescription:
				if s := string(p[2:]); validString(s) {
					c.info.Description = s
				}
			case infoBlockSize:
				if len(p) != 14 {
					return false, fmt.Errorf("%w: NBD_INFO_BLOCK_SIZE of %d bytes", ErrProtocol, len(p))
				}
				c.info.BlockSizes = BlockSizes{
					Minimum:    binary.BigEndian.Uint32(p[2:]),
					Preferred:  binary.BigEndian.Uint32(p[6:]),
					MaxPayload: binary.BigEndian.Uint32(p[10:]),
				}
			}
		case rep == repErrUnsup:
			return false, nil
		case rep&repFlagError != 0:
			return false, fmt.Errorf("nbd: export %q: %w", export, &optionError{optGo, rep, sanitize(p)})
		default:
			return false, fmt.Errorf("%w: unexpected reply %d to NBD_OPT_GO", ErrProtocol, rep)
		}
	}
}

func (c *Client) exportName(export string, noZeroes bool) error {
	if err := c.sendOption(optExportName, []byte(export)); err != nil {
		return err
	}
	n := 10
	if !noZeroes {
		n += exportNameZeroes
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		return fmt.Errorf("nbd: export %q: the server ended the session: %w", export, err)
	}
	c.info.Name = export
	c.info.Size = int64(binary.BigEndian.Uint64(b))
	c.info.Flags = Flags(binary.BigEndian.Uint16(b[8:]))
	// Without NBD_OPT_GO the meta contexts are not usable.
	clear(c.meta)
	c.info.MetaContexts = nil
	return c.checkInfo()
}

// checkInfo checks the export's size and block sizes and fills in the
// default sizes.
func (c *Client) checkInfo() error {
	if c.info.Size < 0 {
		return fmt.Errorf("%w: export size %d", ErrProtocol, uint64(c.info.Size))
	}
	bs := &c.info.BlockSizes
	if *bs == (BlockSizes{}) {
		*bs = BlockSizes{Minimum: 1, Preferred: 4096, MaxPayload: DefaultMaxPayload}
		return nil
	}
	pow2 := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
	if !pow2(bs.Minimum) || bs.Minimum > 65536 || !pow2(bs.Preferred) ||
		bs.Preferred < max(bs.Minimum, 512) || bs.MaxPayload < bs.Preferred {
		return fmt.Errorf("%w: bad block sizes %+v", ErrProtocol, *bs)
	}
	// A payload above the spec's 2^25 is not needed: requests are split.
	bs.MaxPayload = min(bs.MaxPayload, DefaultMaxPayload)
	return nil
}

// sanitize makes a server's message fit to print: valid UTF-8, printable,
// at most 256 bytes.
func sanitize(p []byte) string {
	s := strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, string(p))
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.ToValidUTF8(s, "?")
}

// ListExports connects to the server of uri, asks NBD_OPT_LIST and aborts.
func ListExports(ctx context.Context, uri string, opt Options) ([]ExportInfo, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	conn, err := dialRaw(ctx, u, &opt)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := &Client{raw: conn, conn: conn, br: bufio.NewReaderSize(conn, 4096)}
	defer func() { c.conn.Close() }()
	if _, err := c.greet(); err != nil {
		return nil, err
	}
	if u.TLS {
		if err := c.startTLS(ctx, opt.TLSConfig); err != nil {
			return nil, err
		}
	}
	if err := c.sendOption(optList, nil); err != nil {
		return nil, err
	}
	var out []ExportInfo
	for {
		rep, p, err := c.readReply(optList)
		if err != nil {
			return nil, err
		}
		switch {
		case rep == repAck:
			c.sendOption(optAbort, nil)
			return out, nil
		case rep == repServer && len(p) >= 4:
			n := binary.BigEndian.Uint32(p)
			if uint64(n) > uint64(len(p)-4) {
				return nil, fmt.Errorf("%w: bad NBD_REP_SERVER", ErrProtocol)
			}
			out = append(out, ExportInfo{Name: string(p[4 : 4+n]), Description: sanitize(p[4+n:])})
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("%w: too many exports listed", ErrProtocol)
			}
		case rep&repFlagError != 0:
			return nil, fmt.Errorf("nbd: listing exports: %w", &optionError{optList, rep, sanitize(p)})
		default:
			return nil, fmt.Errorf("%w: unexpected reply %d to NBD_OPT_LIST", ErrProtocol, rep)
		}
	}
}
