package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The server's side of the handshake: the fixed newstyle greeting and
// option haggling, up to NBD_OPT_GO's ACK or NBD_OPT_EXPORT_NAME's reply.

// errAbort ends a handshake the client aborted (NBD_OPT_ABORT): a clean
// end of the session.
var errAbort = errors.New("client aborted the handshake")

// handshake runs the handshake on sc; on success sc.exp is the export
// opened for transmission.
func (sc *serverConn) handshake() error {
	sc.conn.SetDeadline(time.Now().Add(sc.srv.handshakeTimeout()))
	var g [18]byte
	binary.BigEndian.PutUint64(g[0:], nbdMagic)
	binary.BigEndian.PutUint64(g[8:], ihaveopt)
	binary.BigEndian.PutUint16(g[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := sc.conn.Write(g[:]); err != nil {
		return fmt.Errorf("sending the greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(sc.br, cf[:]); err != nil {
		return fmt.Errorf("reading client flags: %w", err)
	}
	cflags := binary.BigEndian.Uint32(cf[:])
	// The spec: the server MUST drop the connection on unknown client
	// flags. A client without fixed newstyle could not read an option
	// reply, so it cannot be told anything: it is dropped too.
	if cflags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return fmt.Errorf("%w: unknown client flags %#x", ErrProtocol, cflags)
	}
	if cflags&flagCFixedNewstyle == 0 {
		return fmt.Errorf("%w: client does not speak fixed newstyle", ErrProtocol)
	}
	sc.noZeroes = cflags&flagCNoZeroes != 0

	budget := maxOptions
	for ; budget > 0; budget-- {
		done, extra, err := sc.option()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		budget += extra
	}
	return fmt.Errorf("%w: client sent too many options", ErrProtocol)
}

// option reads one option and answers it. done: transmission begins.
// extra: more options the client may send (after NBD_OPT_LIST).
func (sc *serverConn) option() (done bool, extra int, err error) {
	var h [optionHeaderLen]byte
	if _, err := io.ReadFull(sc.br, h[:]); err != nil {
		return false, 0, fmt.Errorf("reading an option: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != ihaveopt {
		return false, 0, fmt.Errorf("%w: option magic %#x", ErrProtocol, m)
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOptionLen {
		return false, 0, fmt.Errorf("%w: option %d has %d bytes of data", ErrProtocol, opt, n)
	}

	switch {
	case opt == optAbort:
		// The spec: a server SHOULD ignore data sent with it.
		if err := sc.discard(n); err == nil {
			sc.reply(opt, repAck, nil)
			sc.flush()
		}
		return false, 0, errAbort
	case sc.shuttingDown():
		if opt == optExportName {
			return false, 0, ErrShutdown
		}
		return false, 0, sc.refuse(opt, n, repErrShutdown, "server shutting down")
	case sc.srv.RequireTLS && sc.tlsConn == nil && opt != optStartTLS:
		if opt == optExportName {
			// It cannot be answered with an error: the session ends.
			return false, 0, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME before TLS", ErrTLSRequired)
		}
		return false, 0, sc.refuse(opt, n, repErrTLSReqd, "TLS required")
	}

	switch opt {
	case optStartTLS, optStructuredReply, optList:
		if n != 0 {
			return false, 0, sc.refuse(opt, n, repErrInvalid, "option takes no data")
		}
	case optExportName, optInfo, optGo, optListMetaContext, optSetMetaContext:
	default:
		return false, 0, sc.refuse(opt, n, repErrUnsup, "unsupported option")
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(sc.br, data); err != nil {
		return false, 0, fmt.Errorf("reading option %d: %w", opt, err)
	}

	switch opt {
	case optStartTLS:
		return false, 0, sc.startTLS()
	case optStructuredReply:
		if sc.structured {
			return false, 0, sc.refuse(opt, 0, repErrInvalid, "structured replies already negotiated")
		}
		sc.structured = true
		sc.reply(opt, repAck, nil)
		return false, 0, sc.flush()
	case optList:
		return sc.list()
	case optInfo, optGo:
		return sc.infoGo(opt, data)
	case optListMetaContext, optSetMetaContext:
		return false, 0, sc.metaContext(opt, data)
	case optExportName:
		return true, 0, sc.exportName(data)
	}
	return false, 0, nil
}

// refuse discards n bytes of option data and answers the option with an
// error reply.
func (sc *serverConn) refuse(opt, n, rep uint32, msg string) error {
	if err := sc.discard(n); err != nil {
		return err
	}
	sc.reply(opt, rep, []byte(msg))
	return sc.flush()
}

func (sc *serverConn) discard(n uint32) error {
	if _, err := io.CopyN(io.Discard, sc.br, int64(n)); err != nil {
		return fmt.Errorf("skipping option data: %w", err)
	}
	return nil
}

// reply queues an option reply; flush sends the queue.
func (sc *serverConn) reply(opt, rep uint32, payload []byte) {
	b := sc.hbuf
	b = binary.BigEndian.AppendUint64(b, repMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, rep)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	sc.hbuf = append(b, payload...)
}

func (sc *serverConn) flush() error {
	_, err := sc.conn.Write(sc.hbuf)
	sc.hbuf = sc.hbuf[:0]
	if err != nil {
		return fmt.Errorf("sending an option reply: %w", err)
	}
	return nil
}

func (sc *serverConn) startTLS() error {
	if sc.srv.TLSConfig == nil {
		sc.reply(optStartTLS, repErrPolicy, []byte("TLS is not configured"))
		return sc.flush()
	}
	if sc.tlsConn != nil {
		sc.reply(optStartTLS, repErrInvalid, []byte("TLS already negotiated"))
		return sc.flush()
	}
	sc.reply(optStartTLS, repAck, nil)
	if err := sc.flush(); err != nil {
		return err
	}
	// Bytes the client sent past the option (its ClientHello) may sit in
	// the buffered reader already: the TLS layer reads through it.
	tc := tls.Server(&bufferedConn{Conn: sc.conn, r: sc.br}, sc.srv.TLSConfig)
	ctx, cancel := context.WithTimeout(context.Background(), sc.srv.handshakeTimeout())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		// Too late to go on without TLS: the session ends.
		return fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	sc.peer.TLS = &st
	sc.tlsConn = tc
	sc.conn = tc
	// The old reader stays below the TLS layer; requests are read
	// through a new one above it.
	sc.br = bufio.NewReaderSize(tc, 64<<10)
	// The spec: no negotiation state survives STARTTLS.
	sc.structured = false
	sc.meta, sc.metaExport, sc.metaSet = nil, "", false
	return nil
}

// bufferedConn reads through a bufio.Reader that may hold bytes already.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (sc *serverConn) open(name string) (*Export, error) {
	exp, err := sc.srv.Exports.Open(sc.ctx, sc.peer, name)
	if err != nil {
		return nil, err
	}
	if exp == nil || exp.Backend == nil {
		return nil, fmt.Errorf("nbd: export %q opened without a backend", name)
	}
	if err := sc.resolve(exp); err != nil {
		exp.Backend.Close()
		return nil, err
	}
	return exp, nil
}

// openError answers a failed Open.
func (sc *serverConn) openError(opt uint32, name string, err error) error {
	rep := uint32(repErrUnknown)
	msg := "no such export"
	switch {
	case errors.Is(err, ErrDenied):
		rep, msg = repErrPolicy, "permission denied"
	case errors.Is(err, ErrUnknownExport):
	default:
		sc.srv.logger().Warn("nbd: opening an export failed", "export", name, "err", err)
		msg = "export not available"
	}
	sc.reply(opt, rep, []byte(msg))
	return sc.flush()
}

func (sc *serverConn) list() (bool, int, error) {
	list, err := sc.srv.Exports.List(sc.ctx, sc.peer)
	if err != nil {
		rep := uint32(repErrPlatform)
		if errors.Is(err, ErrDenied) {
			rep = repErrPolicy
		}
		sc.reply(optList, rep, []byte("cannot list exports"))
		return false, 0, sc.flush()
	}
	shown := 0
	for _, e := range list {
		if !validString(e.Name) {
			continue
		}
		p := binary.BigEndian.AppendUint32(nil, uint32(len(e.Name)))
		p = append(p, e.Name...)
		if validString(e.Description) {
			p = append(p, e.Description...)
		}
		sc.reply(optList, repServer, p)
		shown++
		if len(sc.hbuf) > 64<<10 {
			if err := sc.flush(); err != nil {
				return false, 0, err
			}
		}
	}
	sc.reply(optList, repAck, nil)
	// A client may go on to ask about each export listed.
	return false, min(shown, 4096) * 4, sc.flush()
}

func (sc *serverConn) infoGo(opt uint32, data []byte) (bool, int, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		sc.reply(opt, repErrInvalid, []byte("malformed request"))
		return false, 0, sc.flush()
	}
	exp, err := sc.open(req.name)
	if err != nil {
		return false, 0, sc.openError(opt, req.name, err)
	}
	flags := sc.transmissionFlags(exp)
	var p [14]byte
	binary.BigEndian.PutUint16(p[0:], infoExport)
	binary.BigEndian.PutUint64(p[2:], uint64(exp.Size))
	binary.BigEndian.PutUint16(p[10:], uint16(flags))
	sc.reply(opt, repInfo, p[:12])
	if req.wants(infoName) {
		sc.reply(opt, repInfo, append([]byte{0, infoName}, exp.Name...))
	}
	if req.wants(infoDescription) && exp.Description != "" {
		sc.reply(opt, repInfo, append([]byte{0, infoDescription}, exp.Description...))
	}
	// Sent whether asked or not (the spec lets a server send what was
	// not asked); the limits are enforced either way.
	bs := exp.BlockSizes
	binary.BigEndian.PutUint16(p[0:], infoBlockSize)
	binary.BigEndian.PutUint32(p[2:], bs.Minimum)
	binary.BigEndian.PutUint32(p[6:], bs.Preferred)
	binary.BigEndian.PutUint32(p[10:], bs.MaxPayload)
	sc.reply(opt, repInfo, p[:14])
	sc.reply(opt, repAck, nil)
	if err := sc.flush(); err != nil {
		exp.Backend.Close()
		return false, 0, err
	}
	if opt == optInfo {
		exp.Backend.Close()
		return false, 0, nil
	}
	sc.enter(exp, req.name, flags)
	return true, 0, nil
}

func (sc *serverConn) exportName(data []byte) error {
	name := string(data)
	if !validString(name) {
		return fmt.Errorf("%w: malformed export name", ErrProtocol)
	}
	exp, err := sc.open(name)
	if err != nil {
		// NBD_OPT_EXPORT_NAME cannot be refused: the session ends.
		return fmt.Errorf("export %q: %w", name, err)
	}
	flags := sc.transmissionFlags(exp)
	b := binary.BigEndian.AppendUint64(sc.hbuf[:0], uint64(exp.Size))
	b = binary.BigEndian.AppendUint16(b, uint16(flags))
	if !sc.noZeroes {
		b = append(b, make([]byte, exportNameZeroes)...)
	}
	sc.hbuf = b
	if err := sc.flush(); err != nil {
		exp.Backend.Close()
		return err
	}
	sc.enter(exp, name, flags)
	return nil
}

// enter makes exp the connection's export for transmission.
func (sc *serverConn) enter(exp *Export, name string, flags Flags) {
	sc.exp = exp
	sc.flags = flags
	// The spec: contexts set for another export name are not usable.
	if !sc.metaSet || sc.metaExport != name {
		sc.meta = nil
	}
}

func (sc *serverConn) metaContext(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		// The spec: SET replaces the selection even when it fails.
		sc.meta, sc.metaExport, sc.metaSet = nil, "", false
		if !sc.structured {
			sc.reply(opt, repErrInvalid, []byte("structured replies not negotiated"))
			return sc.flush()
		}
	}
	req, err := parseMetaRequest(data)
	if err != nil {
		sc.reply(opt, repErrInvalid, []byte("malformed request"))
		return sc.flush()
	}
	exp, err := sc.open(req.name)
	if err != nil {
		return sc.openError(opt, req.name, err)
	}
	available := append([]string{BaseAllocation}, exp.MetaContexts...)
	exp.Backend.Close()
	selected := matchMeta(available, req.queries, opt == optListMetaContext)
	if opt == optSetMetaContext {
		sc.metaSet, sc.metaExport = true, req.name
	}
	for i, name := range selected {
		id := uint32(0) // the spec: reserved in LIST replies
		if opt == optSetMetaContext {
			id = uint32(i + 1)
			sc.meta = append(sc.meta, metaContext{id: id, name: name})
		}
		p := binary.BigEndian.AppendUint32(nil, id)
		sc.reply(opt, repMetaContext, append(p, name...))
	}
	sc.reply(opt, repAck, nil)
	return sc.flush()
}

// resolve checks exp and fills in its default block sizes.
func (sc *serverConn) resolve(exp *Export) error {
	if exp.Size < 0 {
		return fmt.Errorf("nbd: export %q has negative size", exp.Name)
	}
	if !validString(exp.Name) {
		return fmt.Errorf("nbd: export name %q is not a valid NBD string", exp.Name)
	}
	if !validString(exp.Description) {
		exp.Description = ""
	}
	for _, m := range exp.MetaContexts {
		if ns, _ := namespace(m); ns == "" || ns == "base" || !validString(m) || len(m) == len(ns) {
			return fmt.Errorf("nbd: export %q: bad meta context %q", exp.Name, m)
		}
	}
	bs := &exp.BlockSizes
	if bs.Minimum == 0 {
		bs.Minimum = 1
	}
	if bs.Preferred == 0 {
		bs.Preferred = max(4096, bs.Minimum)
	}
	limit := sc.srv.maxPayload()
	if bs.MaxPayload == 0 || bs.MaxPayload > limit {
		bs.MaxPayload = limit
	}
	pow2 := func(v uint32) bool { return v&(v-1) == 0 }
	if !pow2(bs.Minimum) || bs.Minimum > 65536 || !pow2(bs.Preferred) ||
		bs.Preferred < max(bs.Minimum, 512) || bs.MaxPayload < bs.Preferred {
		return fmt.Errorf("nbd: export %q: bad block sizes %+v", exp.Name, *bs)
	}
	return nil
}

// transmissionFlags are the flags exp is advertised with on this
// connection: only what the backend supports, nothing that writes on a
// read-only export, DF only with structured replies.
func (sc *serverConn) transmissionFlags(exp *Export) Flags {
	f := FlagHasFlags
	feat := exp.Features
	if feat&CanFlush != 0 {
		f |= FlagSendFlush
	}
	if exp.ReadOnly {
		f |= FlagReadOnly
	} else {
		if feat&CanFUA != 0 {
			f |= FlagSendFUA
		}
		if feat&CanTrim != 0 {
			f |= FlagSendTrim
		}
		if feat&CanWriteZeroes != 0 {
			f |= FlagSendWriteZeroes
			if feat&CanFastZero != 0 {
				f |= FlagSendFastZero
			}
		}
	}
	if sc.structured {
		f |= FlagSendDF
	}
	if feat&CanMultiConn != 0 {
		f |= FlagCanMultiConn
	}
	return f
}
