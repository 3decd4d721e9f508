package nbd

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// enter runs a handshake into transmission of export "x".
func (s *session) enter(structured bool, meta ...string) {
	s.t.Helper()
	s.greet(flagCFixedNewstyle | flagCNoZeroes)
	if structured {
		s.option(optStructuredReply, nil)
		if rep, _ := s.reply(optStructuredReply); rep != repAck {
			s.t.Fatalf("structured replies: %x", rep)
		}
	}
	if len(meta) > 0 {
		s.option(optSetMetaContext, metaData("x", meta...))
		for {
			if rep, _ := s.reply(optSetMetaContext); rep == repAck {
				break
			}
		}
	}
	s.option(optGo, infoData("x"))
	for {
		rep, _ := s.reply(optGo)
		if rep == repAck {
			return
		}
		if rep != repInfo {
			s.t.Fatalf("GO: %x", rep)
		}
	}
}

// chunk is a reply as read: a simple reply has typ -1.
type chunk struct {
	typ     int
	flags   uint16
	errno   Errno
	payload []byte
}

func (c chunk) String() string {
	if c.typ < 0 {
		return fmt.Sprintf("simple(%d, %d bytes)", c.errno, len(c.payload))
	}
	return fmt.Sprintf("chunk(type %#x, flags %d, errno %d, %d bytes)", c.typ, c.flags, c.errno, len(c.payload))
}

// replies reads the whole reply to cookie; readLen is the data length of
// a read with simple replies.
func (s *session) replies(cookie uint64, readLen int) []chunk {
	s.t.Helper()
	var out []chunk
	for {
		m := binary.BigEndian.Uint32(s.read(4))
		switch m {
		case simpleReplyMagic:
			h := s.read(12)
			if got := binary.BigEndian.Uint64(h[4:]); got != cookie {
				s.t.Fatalf("reply to cookie %d, want %d", got, cookie)
			}
			c := chunk{typ: -1, errno: Errno(binary.BigEndian.Uint32(h))}
			if c.errno == 0 && readLen > 0 {
				c.payload = s.read(readLen)
			}
			return append(out, c)
		case structuredReplyMagic:
			h := s.read(16)
			if got := binary.BigEndian.Uint64(h[4:]); got != cookie {
				s.t.Fatalf("reply to cookie %d, want %d", got, cookie)
			}
			c := chunk{typ: int(binary.BigEndian.Uint16(h[2:])), flags: binary.BigEndian.Uint16(h)}
			c.payload = s.read(int(binary.BigEndian.Uint32(h[12:])))
			if c.typ&replyTypeErrorBit != 0 {
				c.errno = Errno(binary.BigEndian.Uint32(c.payload))
			}
			out = append(out, c)
			if c.flags&replyFlagDone != 0 {
				return out
			}
		default:
			s.t.Fatalf("reply magic %#x", m)
		}
	}
}

// errnoOfReply is the error of a whole reply.
func errnoOfReply(cs []chunk) Errno {
	for _, c := range cs {
		if c.errno != 0 {
			return c.errno
		}
	}
	return 0
}

func TestRequestChecks(t *testing.T) {
	big := oneExport{size: 1 << 20, feat: allFeatures, bs: BlockSizes{Minimum: 512, Preferred: 4096, MaxPayload: 64 << 10}}
	ro := big
	ro.ro = true
	plain := oneExport{size: 1 << 20}
	type req struct {
		flags, cmd uint16
		off        uint64
		length     uint32
	}
	tests := []struct {
		name       string
		exp        oneExport
		structured bool
		meta       bool
		r          req
		want       Errno
	}{
		{"good read", big, false, false, req{0, cmdRead, 512, 4096}, 0},
		{"good structured read", big, true, false, req{0, cmdRead, 512, 4096}, 0},
		{"read of nothing", big, true, false, req{0, cmdRead, 0, 0}, 0},
		{"unknown command", big, false, false, req{0, 99, 0, 0}, EINVAL},
		{"cache is not offered", big, false, false, req{0, cmdCache, 0, 512}, EINVAL},
		{"read past the end", big, false, false, req{0, cmdRead, 1 << 20, 512}, EINVAL},
		{"read across the end", big, false, false, req{0, cmdRead, 1<<20 - 512, 1024}, EINVAL},
		{"offset that wraps", big, false, false, req{0, cmdRead, 1<<64 - 512, 1024}, EINVAL},
		{"write past the end", big, false, false, req{0, cmdWrite, 1 << 20, 512}, ENOSPC},
		{"zeroes past the end", big, false, false, req{0, cmdWriteZeroes, 1 << 20, 512}, ENOSPC},
		{"trim past the end", big, false, false, req{0, cmdTrim, 1 << 20, 512}, EINVAL},
		{"block status past the end", big, true, true, req{0, cmdBlockStatus, 1 << 20, 512}, EINVAL},
		{"unaligned offset", big, false, false, req{0, cmdRead, 100, 512}, EINVAL},
		{"unaligned length", big, false, false, req{0, cmdWrite, 0, 100}, EINVAL},
		{"read over the maximum payload", big, false, false, req{0, cmdRead, 0, 128 << 10}, EINVAL},
		{"structured read over the maximum payload", big, true, false, req{0, cmdRead, 0, 128 << 10}, EOVERFLOW},
		{"write over the maximum payload", big, false, false, req{0, cmdWrite, 0, 128 << 10}, EINVAL},
		{"zeroes over the maximum payload", big, false, false, req{0, cmdWriteZeroes, 0, 512 << 10}, 0},
		{"flush with an offset", big, false, false, req{0, cmdFlush, 512, 0}, EINVAL},
		{"flush with a length", big, false, false, req{0, cmdFlush, 0, 512}, EINVAL},
		{"flush", big, false, false, req{0, cmdFlush, 0, 0}, 0},
		{"unknown flag", big, false, false, req{1 << 9, cmdRead, 0, 512}, EINVAL},
		{"NO_HOLE on a write", big, false, false, req{cmdFlagNoHole, cmdWrite, 0, 512}, EINVAL},
		{"NO_HOLE on zeroes", big, false, false, req{cmdFlagNoHole, cmdWriteZeroes, 0, 512}, 0},
		{"FAST_ZERO on a trim", big, false, false, req{cmdFlagFastZero, cmdTrim, 0, 512}, EINVAL},
		{"DF on a write", big, true, false, req{cmdFlagDF, cmdWrite, 0, 512}, EINVAL},
		{"DF without structured replies", big, false, false, req{cmdFlagDF, cmdRead, 0, 512}, EINVAL},
		{"DF read", big, true, false, req{cmdFlagDF, cmdRead, 0, 512}, 0},
		{"REQ_ONE on a read", big, true, false, req{cmdFlagReqOne, cmdRead, 0, 512}, EINVAL},
		{"FUA on a read is accepted", big, false, false, req{cmdFlagFUA, cmdRead, 0, 512}, 0},
		{"FUA write", big, false, false, req{cmdFlagFUA, cmdWrite, 0, 512}, 0},
		{"block status without contexts", big, true, false, req{0, cmdBlockStatus, 0, 512}, EINVAL},
		{"block status without structured replies", big, false, false, req{0, cmdBlockStatus, 0, 512}, EINVAL},
		{"block status of nothing", big, true, true, req{0, cmdBlockStatus, 0, 0}, EINVAL},
		{"block status", big, true, true, req{0, cmdBlockStatus, 0, 8192}, 0},
		{"write to a read-only export", ro, false, false, req{0, cmdWrite, 0, 512}, EPERM},
		{"zeroes on a read-only export", ro, false, false, req{0, cmdWriteZeroes, 0, 512}, EPERM},
		{"trim on a read-only export", ro, true, false, req{0, cmdTrim, 0, 512}, EPERM},
		{"FUA not offered", plain, false, false, req{cmdFlagFUA, cmdWrite, 0, 512}, EINVAL},
		{"flush not offered", plain, false, false, req{0, cmdFlush, 0, 0}, EINVAL},
		{"trim not offered", plain, false, false, req{0, cmdTrim, 0, 512}, EINVAL},
		{"zeroes not offered", plain, false, false, req{0, cmdWriteZeroes, 0, 512}, EINVAL},
		{"fast zero not offered", plain, false, false, req{cmdFlagFastZero, cmdWriteZeroes, 0, 512}, EINVAL},
		{"unaligned write with minimum 1", plain, false, false, req{0, cmdWrite, 3, 5}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSession(t, testServer(tc.exp))
			var meta []string
			if tc.meta {
				meta = []string{BaseAllocation}
			}
			s.enter(tc.structured, meta...)
			r := tc.r
			s.write(requestBytes(r.flags, r.cmd, 1, r.off, r.length))
			if r.cmd == cmdWrite {
				s.write(make([]byte, r.length))
			}
			readLen := 0
			if r.cmd == cmdRead && !tc.structured {
				readLen = int(r.length)
			}
			got := s.replies(1, readLen)
			if e := errnoOfReply(got); e != tc.want {
				t.Errorf("reply %v: errno %d, want %d", got, e, tc.want)
			}
			if tc.structured && r.cmd == cmdRead && got[0].typ < 0 {
				t.Errorf("a simple reply to a read with structured replies: %v", got)
			}
			// The connection goes on: a good read works.
			s.write(requestBytes(0, cmdRead, 2, 0, 512))
			if e := errnoOfReply(s.replies(2, 512)); e != 0 {
				t.Errorf("read after it: errno %d", e)
			}
			s.write(requestBytes(0, cmdDisc, 3, 0, 0))
			if !s.ended() {
				t.Error("NBD_CMD_DISC did not end the session")
			}
		})
	}
}

func TestReadErrorReplies(t *testing.T) {
	exp := oneExport{size: 1 << 20, bad: 5000}
	tests := []struct {
		name       string
		structured bool
		off        uint64
		length     uint32
		want       string
	}{
		{"simple", false, 4096, 4096, "[simple(5, 0 bytes)]"},
		{"structured, good part first", true, 4096, 4096,
			"[chunk(type 0x1, flags 0, errno 0, 912 bytes) chunk(type 0x8002, flags 1, errno 5, 32 bytes)]"},
		{"structured, at the first byte", true, 5000, 100, "[chunk(type 0x8002, flags 1, errno 5, 32 bytes)]"},
		{"structured, good", true, 0, 4096, "[chunk(type 0x1, flags 1, errno 0, 4104 bytes)]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSession(t, testServer(exp))
			s.enter(tc.structured)
			s.write(requestBytes(0, cmdRead, 9, tc.off, tc.length))
			readLen := 0
			if !tc.structured {
				readLen = int(tc.length)
			}
			got := s.replies(9, readLen)
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("replies %v, want %s", got, tc.want)
			}
			for _, c := range got {
				switch c.typ {
				case replyTypeOffsetData:
					if o := binary.BigEndian.Uint64(c.payload); o != tc.off {
						t.Errorf("data chunk at %d, want %d", o, tc.off)
					}
				case replyTypeErrorOffset:
					if o := binary.BigEndian.Uint64(c.payload[len(c.payload)-8:]); o != 5000 {
						t.Errorf("error offset %d, want 5000", o)
					}
				}
			}
		})
	}
}

// TestMetaForAnotherExport: contexts selected for one export name are not
// usable after NBD_OPT_GO of another (the spec), nor after STARTTLS.
func TestMetaForAnotherExport(t *testing.T) {
	s := startSession(t, testServer(oneExport{}))
	s.greet(flagCFixedNewstyle | flagCNoZeroes)
	s.option(optStructuredReply, nil)
	s.reply(optStructuredReply)
	s.option(optSetMetaContext, metaData("y", BaseAllocation))
	if rep, _ := s.reply(optSetMetaContext); rep != repMetaContext {
		t.Fatalf("SET_META_CONTEXT: %x", rep)
	}
	s.reply(optSetMetaContext)
	s.option(optGo, infoData("x"))
	for {
		if rep, _ := s.reply(optGo); rep == repAck {
			break
		}
	}
	s.write(requestBytes(0, cmdBlockStatus, 1, 0, 4096))
	if e := errnoOfReply(s.replies(1, 0)); e != EINVAL {
		t.Errorf("block status with contexts of another export: errno %d, want EINVAL", e)
	}
}

func TestBlockStatusReply(t *testing.T) {
	s := startSession(t, testServer(oneExport{}))
	s.enter(true, "test:odd", BaseAllocation)
	s.write(requestBytes(0, cmdBlockStatus, 5, 1000, 4000))
	got := s.replies(5, 0)
	if len(got) != 2 || got[0].typ != replyTypeBlockStatus || got[1].typ != replyTypeBlockStatus ||
		got[0].flags != 0 || got[1].flags != replyFlagDone {
		t.Fatalf("replies %v", got)
	}
	ids := map[uint32]string{}
	for _, c := range got {
		ids[binary.BigEndian.Uint32(c.payload)] = fmt.Sprint(descriptors(c.payload[4:]))
	}
	// IDs in the order of the export's contexts: base:allocation 1, test:odd 2.
	want := map[uint32]string{
		1: "[[4000 0]]",
		2: "[[24 0] [1024 1] [1024 0] [1024 1] [904 0]]",
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("block status %v, want %v", ids, want)
	}
}
