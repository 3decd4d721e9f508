package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"reflect"
	"sync/atomic"
	"testing"
)

// countingExports counts opens and closes, so a fuzz run can check that
// every backend opened is closed.
type countingExports struct {
	oneExport
	opens, closes atomic.Int64
}

func (c *countingExports) Open(ctx context.Context, p *Peer, name string) (*Export, error) {
	e, err := c.oneExport.Open(ctx, p, name)
	if err == nil {
		c.opens.Add(1)
		e.Backend = &closeCounter{Backend: e.Backend, n: &c.closes}
	}
	return e, err
}

type closeCounter struct {
	Backend
	n *atomic.Int64
}

func (c *closeCounter) Close() error { c.n.Add(1); return c.Backend.Close() }

func fuzzExports() *countingExports {
	return &countingExports{oneExport: oneExport{size: 128 << 10, feat: allFeatures, bad: 70000,
		bs: BlockSizes{Minimum: 1, Preferred: 4096, MaxPayload: 64 << 10}}}
}

func serveBytes(t *testing.T, exp *countingExports, in []byte) []byte {
	fc := &fakeConn{in: bytes.NewReader(in)}
	srv := &Server{Exports: exp}
	srv.ServeConn(context.Background(), fc)
	if o, c := exp.opens.Load(), exp.closes.Load(); o != c {
		t.Fatalf("%d backends opened, %d closed", o, c)
	}
	return fc.out.Bytes()
}

func clientFlags() []byte {
	return binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle|flagCNoZeroes)
}

// handshakeBytes is a client's handshake into transmission of "x" with
// structured replies and both contexts.
func handshakeBytes() []byte {
	b := clientFlags()
	b = append(b, optionBytes(optStructuredReply, nil)...)
	b = append(b, optionBytes(optSetMetaContext, metaData("x", BaseAllocation, "test:odd"))...)
	return append(b, optionBytes(optGo, infoData("x", infoBlockSize))...)
}

func FuzzServerOptions(f *testing.F) {
	f.Add(handshakeBytes())
	seq := clientFlags()
	for _, o := range []struct {
		opt  uint32
		data []byte
	}{
		{optList, nil}, {optInfo, infoData("x", infoName, infoDescription)}, {42, []byte("zz")},
		{optListMetaContext, metaData("x")}, {optListMetaContext, metaData("x", "base:", "test:")},
		{optStructuredReply, nil}, {optSetMetaContext, metaData("x", "test:odd")},
		{optStartTLS, nil}, {optGo, infoData("nosuch")}, {optExportName, []byte("x")},
	} {
		seq = append(seq, optionBytes(o.opt, o.data)...)
	}
	f.Add(seq)
	f.Add(append(clientFlags(), optionBytes(optAbort, nil)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := serveBytes(t, fuzzExports(), in)
		if len(out) < 18 || binary.BigEndian.Uint64(out) != nbdMagic {
			t.Fatalf("no greeting: %x", out)
		}
	})
}

// checkReplies checks that out is a sequence of well-formed replies with
// structured replies negotiated: simple replies without payload, chunks
// whose lengths fit their types, each cookie's chunks ending in one
// flagged done.
func checkReplies(t *testing.T, out []byte) {
	open := map[uint64]bool{}
	for len(out) > 0 {
		if len(out) < 4 {
			t.Fatalf("trailing %x", out)
		}
		switch binary.BigEndian.Uint32(out) {
		case simpleReplyMagic:
			if len(out) < 16 {
				t.Fatalf("short simple reply %x", out)
			}
			if open[binary.BigEndian.Uint64(out[8:])] {
				t.Fatalf("simple reply inside a structured one")
			}
			out = out[16:]
		case structuredReplyMagic:
			if len(out) < 20 {
				t.Fatalf("short chunk header %x", out)
			}
			flags, typ := binary.BigEndian.Uint16(out[4:]), binary.BigEndian.Uint16(out[6:])
			cookie, n := binary.BigEndian.Uint64(out[8:]), int(binary.BigEndian.Uint32(out[16:]))
			if len(out) < 20+n {
				t.Fatalf("chunk of %d bytes, %d left", n, len(out)-20)
			}
			p := out[20 : 20+n]
			switch typ {
			case replyTypeNone:
				if n != 0 || flags&replyFlagDone == 0 {
					t.Fatal("bad NONE chunk")
				}
			case replyTypeOffsetData:
				if n < 9 {
					t.Fatal("short data chunk")
				}
			case replyTypeBlockStatus:
				if n < 12 || (n-4)%8 != 0 {
					t.Fatalf("block status chunk of %d bytes", n)
				}
				for i := 4; i < n; i += 8 {
					if binary.BigEndian.Uint32(p[i:]) == 0 {
						t.Fatal("extent of length 0")
					}
				}
			case replyTypeError, replyTypeErrorOffset:
				if n < 6 || binary.BigEndian.Uint32(p) == 0 {
					t.Fatal("bad error chunk")
				}
				m := int(binary.BigEndian.Uint16(p[4:]))
				tail := n - 6 - m
				if (typ == replyTypeError && tail != 0) || (typ == replyTypeErrorOffset && tail != 8) {
					t.Fatalf("error chunk of %d bytes with a message of %d", n, m)
				}
			default:
				t.Fatalf("chunk type %d", typ)
			}
			open[cookie] = flags&replyFlagDone == 0
			out = out[20+n:]
		default:
			t.Fatalf("reply magic %x", out[:4])
		}
	}
	for c, o := range open {
		if o {
			t.Fatalf("reply to cookie %d never done", c)
		}
	}
}

func FuzzServerRequests(f *testing.F) {
	hs := handshakeBytes()
	prefix := len(serveBytes(&testing.T{}, fuzzExports(), hs))
	var seed []byte
	for i, r := range []struct {
		flags, cmd uint16
		off        uint64
		length     uint32
	}{
		{0, cmdRead, 0, 4096}, {0, cmdRead, 69000, 4096}, {cmdFlagFUA, cmdWrite, 100, 8},
		{0, cmdBlockStatus, 0, 128 << 10}, {cmdFlagReqOne, cmdBlockStatus, 1000, 5000},
		{cmdFlagNoHole, cmdWriteZeroes, 0, 512}, {0, cmdFlush, 0, 0}, {0, cmdTrim, 0, 4096},
		{0, 99, 0, 0}, {0, cmdRead, 128 << 10, 1}, {cmdFlagDF, cmdRead, 0, 0}, {0, cmdDisc, 0, 0},
	} {
		seed = append(seed, requestBytes(r.flags, r.cmd, uint64(i), r.off, r.length)...)
		if r.cmd == cmdWrite {
			seed = append(seed, "12345678"...)
		}
	}
	f.Add(seed)
	f.Add(requestBytes(0, cmdWrite, 1, 0, 1<<30))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := serveBytes(t, fuzzExports(), append(append([]byte(nil), hs...), in...))
		if len(out) < prefix {
			t.Fatalf("handshake cut short")
		}
		checkReplies(t, out[prefix:])
	})
}

// fuzzClient is a client in transmission over in, with calls pending:
// 1 read [4096, +8192), 2 read [0, +512), 3 block status [0, +65536),
// 4 write, 5 block status with REQ_ONE [100, +1000).
func fuzzClient(in []byte, structured bool) (*Client, map[uint64]*call) {
	fc := &fakeConn{in: bytes.NewReader(in)}
	c := &Client{raw: fc, conn: fc, br: bufio.NewReader(fc),
		info:    Info{Size: 1 << 20, Structured: structured, BlockSizes: BlockSizes{1, 4096, 1 << 20}},
		meta:    map[uint32]string{1: BaseAllocation, 2: "test:odd"},
		pending: map[uint64]*call{}, slots: make(chan struct{}, 8), done: make(chan struct{}), rdone: make(chan struct{})}
	// Calls made here, not from the pool, so that every run of an input
	// covers the same code (the fuzzer's minimizer needs that).
	mk := func(cmd, flags uint16, off uint64, length uint32, buf []byte) *call {
		return &call{c: c, cmd: cmd, flags: flags, off: off, length: length, buf: buf, done: make(chan error, 1)}
	}
	calls := map[uint64]*call{
		1: mk(cmdRead, 0, 4096, 8192, make([]byte, 8192)),
		2: mk(cmdRead, 0, 0, 512, make([]byte, 512)),
		3: mk(cmdBlockStatus, 0, 0, 65536, nil),
		4: mk(cmdWrite, 0, 0, 512, nil),
		5: mk(cmdBlockStatus, cmdFlagReqOne, 100, 1000, nil),
	}
	for k, cl := range calls {
		c.pending[k] = cl
		c.slots <- struct{}{}
	}
	return c, calls
}

func fuzzSeedClient() []byte {
	var seed []byte
	data := appendChunkHeader(nil, 0, replyTypeOffsetData, 1, 8+4096)
	data = binary.BigEndian.AppendUint64(data, 4096)
	seed = append(append(seed, data...), make([]byte, 4096)...)
	hole := appendChunkHeader(nil, 0, replyTypeOffsetHole, 1, 12)
	hole = binary.BigEndian.AppendUint64(hole, 8192)
	seed = binary.BigEndian.AppendUint32(append(seed, hole...), 2048)
	seed = append(seed, appendErrorChunk(nil, 1, EIO, true, 10240)...)
	seed = append(seed, appendSimpleReply(nil, EIO, 2)...)
	bs := appendChunkHeader(nil, 0, replyTypeBlockStatus, 3, 4+16)
	bs = binary.BigEndian.AppendUint32(bs, 1)
	bs = binary.BigEndian.AppendUint64(bs, 4096<<32|3)
	bs = binary.BigEndian.AppendUint64(bs, 61440<<32|0)
	seed = append(seed, bs...)
	bs2 := appendChunkHeader(nil, replyFlagDone, replyTypeBlockStatus, 3, 12)
	bs2 = binary.BigEndian.AppendUint32(bs2, 2)
	seed = binary.BigEndian.AppendUint64(append(seed, bs2...), 65536<<32|1)
	seed = append(seed, appendSimpleReply(nil, 0, 4)...)
	seed = append(seed, appendChunkHeader(nil, replyFlagDone, replyTypeNone, 5, 0)...)
	return seed
}

func FuzzClientReplies(f *testing.F) {
	// The first byte says whether structured replies were negotiated.
	f.Add(append([]byte{1}, fuzzSeedClient()...))
	f.Add(append(append([]byte{0}, appendSimpleReply(nil, 0, 2)...), make([]byte, 512)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		c, calls := fuzzClient(in[1:], in[0]&1 != 0)
		c.readReplies()
		for cookie := uint64(1); cookie <= 5; cookie++ {
			cl := calls[cookie]
			select {
			case <-cl.done:
			default:
				if _, still := c.pending[cookie]; !still {
					t.Fatalf("call %d left pending but not finished", cookie)
				}
				continue
			}
			end := cl.off + uint64(cl.length)
			prev := uint64(0)
			for _, s := range cl.spans {
				if s.off < cl.off || s.end > end || s.off >= s.end || s.off < prev {
					t.Fatalf("call %d: bad spans %v", cookie, cl.spans)
				}
				prev = s.end
			}
			if n := cl.goodPrefix(); n < 0 || n > int(cl.length) {
				t.Fatalf("call %d: good prefix %d of %d", cookie, n, cl.length)
			}
			if cl.hasOff && (cl.errOff < cl.off || cl.errOff >= end) {
				t.Fatalf("call %d: error offset %d outside the request", cookie, cl.errOff)
			}
			for name, ext := range cl.ext {
				if cl.flags&cmdFlagReqOne != 0 && (len(ext) != 1 || ext[0].Length > int64(cl.length)) {
					t.Fatalf("call %d: REQ_ONE answered %v", cookie, ext)
				}
				pos := int64(cl.off)
				for _, e := range ext {
					if e.Offset != pos || e.Length <= 0 {
						t.Fatalf("call %d %s: extents %v", cookie, name, ext)
					}
					pos += e.Length
				}
			}
			if err := cl.result(); err != nil && !cl.failed {
				t.Fatal("an error without a failure")
			}
		}
		c.die(ErrClosed)
	})
}

func FuzzURI(f *testing.F) {
	for _, s := range []string{
		"nbd://example.com/disk", "nbd://[::1]:10810/a%20b", "nbd+unix:///e?socket=/run/x.sock",
		"nbds+unix:///?socket=s", "nbds://h:1/", "nbd+tcp://h/x/y", "nbd://h:0/", "nbd://u@h/",
		"nbd+unix://h/e?socket=s", "nbd://h/e?socket=s", "nbd://h/e#f", "http://h/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if !validString(u.Export) || (u.Network != "tcp" && u.Network != "unix") || u.Address == "" {
			t.Fatalf("%q parsed to %+v", s, u)
		}
		v, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", s, u.String(), err)
		}
		if !reflect.DeepEqual(u, v) {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, u, u.String(), v)
		}
	})
}
