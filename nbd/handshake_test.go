package nbd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

func testServer(o oneExport) *Server {
	if o.size == 0 {
		o.size = 1 << 20
	}
	return &Server{Exports: o}
}

func TestHandshakeDrops(t *testing.T) {
	tests := []struct {
		name   string
		cflags uint32
		then   []byte
	}{
		{"unknown client flag", flagCFixedNewstyle | 1<<5, nil},
		{"not fixed newstyle", 0, nil},
		{"not fixed newstyle, no zeroes", flagCNoZeroes, nil},
		{"bad option magic", flagCFixedNewstyle, append([]byte("IHAVEOPS"), make([]byte, 8)...)},
		{"option too long", flagCFixedNewstyle, optionBytes(99, nil)[:12:12]},
		{"export name of an unknown export", flagCFixedNewstyle, optionBytes(optExportName, []byte("nosuch"))},
		{"export name with a NUL", flagCFixedNewstyle, optionBytes(optExportName, []byte("x\x00"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSession(t, testServer(oneExport{}))
			s.greet(tc.cflags)
			then := tc.then
			if tc.name == "option too long" {
				then = binary.BigEndian.AppendUint32(then, maxOptionLen+1)
			}
			if then != nil {
				s.write(then)
			}
			if !s.ended() {
				t.Error("the server did not end the session")
			}
		})
	}
}

type step struct {
	opt  uint32
	data []byte
	want []uint32 // reply types, the last one final
}

func infoData(name string, infos ...uint16) []byte { return appendInfoRequest(nil, name, infos...) }
func metaData(name string, q ...string) []byte     { return appendMetaRequest(nil, name, q) }

func TestOptions(t *testing.T) {
	structured := step{optStructuredReply, nil, []uint32{repAck}}
	tests := []struct {
		name  string
		srv   *Server
		steps []step
	}{
		{"unknown options are answered and skipped", nil, []step{
			{42, []byte("some data"), []uint32{repErrUnsup}},
			{optExtendedHeaders, nil, []uint32{repErrUnsup}},
			{optPeekExport, nil, []uint32{repErrUnsup}},
			{optList, nil, []uint32{repServer, repAck}},
		}},
		{"options that take no data", nil, []step{
			{optList, []byte{0}, []uint32{repErrInvalid}},
			{optStructuredReply, []byte{1, 2}, []uint32{repErrInvalid}},
			{optStartTLS, []byte{1}, []uint32{repErrInvalid}},
		}},
		{"structured replies once", nil, []step{structured, {optStructuredReply, nil, []uint32{repErrInvalid}}}},
		{"STARTTLS without TLS", nil, []step{{optStartTLS, nil, []uint32{repErrPolicy}}}},
		{"malformed INFO", nil, []step{
			{optInfo, []byte{0, 0, 0}, []uint32{repErrInvalid}},
			{optInfo, []byte{0, 0, 0, 9, 'x', 0, 0}, []uint32{repErrInvalid}},
			{optInfo, append(infoData("x"), 0), []uint32{repErrInvalid}},
			{optInfo, infoData("x", 1)[:7], []uint32{repErrInvalid}},
			{optInfo, infoData("x\x00"), []uint32{repErrInvalid}},
			{optInfo, infoData("\xff\xfe"), []uint32{repErrInvalid}},
			{optGo, infoData("nosuch"), []uint32{repErrUnknown}},
		}},
		{"INFO", nil, []step{
			{optInfo, infoData("x"), []uint32{repInfo, repInfo, repAck}},
			{optInfo, infoData("x", infoName, infoDescription, infoBlockSize, 77), []uint32{repInfo, repInfo, repInfo, repInfo, repAck}},
		}},
		{"LIST_META_CONTEXT", nil, []step{
			{optListMetaContext, metaData("x"), []uint32{repMetaContext, repMetaContext, repAck}},
			{optListMetaContext, metaData("x", "base:"), []uint32{repMetaContext, repAck}},
			{optListMetaContext, metaData("x", "test:"), []uint32{repMetaContext, repAck}},
			{optListMetaContext, metaData("x", "base:allocation", "test:odd", "base:"), []uint32{repMetaContext, repMetaContext, repAck}},
			{optListMetaContext, metaData("x", "other:", "base:nosuch"), []uint32{repAck}},
			{optListMetaContext, metaData("x", "nocolon"), []uint32{repErrInvalid}},
			{optListMetaContext, metaData("x", ":leaf"), []uint32{repErrInvalid}},
			{optListMetaContext, metaData("nosuch"), []uint32{repErrUnknown}},
			{optListMetaContext, metaData("x")[:6], []uint32{repErrInvalid}},
			{optListMetaContext, append(metaData("x", "base:"), 0), []uint32{repErrInvalid}},
			{optListMetaContext, []byte{0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff}, []uint32{repErrInvalid}},
		}},
		{"SET_META_CONTEXT needs structured replies", nil, []step{
			{optSetMetaContext, metaData("x", "base:allocation"), []uint32{repErrInvalid}},
		}},
		{"SET_META_CONTEXT", nil, []step{
			structured,
			{optSetMetaContext, metaData("x", "base:", "test:"), []uint32{repAck}},
			{optSetMetaContext, metaData("x", "test:odd", "base:allocation", "test:odd"), []uint32{repMetaContext, repMetaContext, repAck}},
			{optSetMetaContext, metaData("x"), []uint32{repAck}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.srv
			if srv == nil {
				srv = testServer(oneExport{})
			}
			s := startSession(t, srv)
			s.greet(flagCFixedNewstyle | flagCNoZeroes)
			for i, st := range tc.steps {
				s.option(st.opt, st.data)
				var got []uint32
				for {
					rep, _ := s.reply(st.opt)
					got = append(got, rep)
					if rep == repAck || rep&repFlagError != 0 {
						break
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(st.want) {
					t.Errorf("step %d (option %d): replies %x, want %x", i, st.opt, got, st.want)
				}
			}
			s.option(optAbort, []byte("ignored"))
			if rep, _ := s.reply(optAbort); rep != repAck {
				t.Errorf("ABORT answered %x", rep)
			}
			if !s.ended() {
				t.Error("the session goes on after ABORT")
			}
		})
	}
}

func TestInfoContents(t *testing.T) {
	s := startSession(t, testServer(oneExport{size: 12345 * 512, ro: true, feat: allFeatures,
		bs: BlockSizes{Minimum: 512, Preferred: 8192, MaxPayload: 1 << 20}}))
	s.greet(flagCFixedNewstyle)
	s.option(optStructuredReply, nil)
	s.reply(optStructuredReply)
	s.option(optGo, infoData("x", infoName, infoDescription))
	got := map[uint16][]byte{}
	for {
		rep, p := s.reply(optGo)
		if rep == repAck {
			break
		}
		if rep != repInfo {
			t.Fatalf("reply %x", rep)
		}
		got[binary.BigEndian.Uint16(p)] = p[2:]
	}
	flags := FlagHasFlags | FlagReadOnly | FlagSendFlush | FlagSendDF | FlagCanMultiConn
	want := map[uint16][]byte{
		infoExport:      binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, 12345*512), uint16(flags)),
		infoName:        []byte("x"),
		infoDescription: []byte("test"),
		infoBlockSize:   {0, 0, 2, 0, 0, 0, 0x20, 0, 0, 0x10, 0, 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("info\n got %x\nwant %x", got, want)
	}
}

func TestForcedTLS(t *testing.T) {
	srv := &Server{Exports: oneExport{size: 1 << 20}, RequireTLS: true}
	if err := srv.ServeConn(t.Context(), &fakeConn{in: bytes.NewReader(nil)}); err == nil {
		t.Fatal("RequireTLS without a TLSConfig served")
	}
	srv.TLSConfig = testTLSConfig(t)
	s := startSession(t, srv)
	s.greet(flagCFixedNewstyle)
	for _, st := range []step{
		{optList, nil, []uint32{repErrTLSReqd}},
		{optInfo, infoData("x"), []uint32{repErrTLSReqd}},
		{optGo, infoData("x"), []uint32{repErrTLSReqd}},
		{optStructuredReply, nil, []uint32{repErrTLSReqd}},
		{77, []byte("zz"), []uint32{repErrTLSReqd}},
		{optStartTLS, []byte("x"), []uint32{repErrInvalid}},
	} {
		s.option(st.opt, st.data)
		if rep, _ := s.reply(st.opt); rep != st.want[0] {
			t.Errorf("option %d before TLS: %x, want %x", st.opt, rep, st.want[0])
		}
	}
	s.option(optExportName, []byte("x"))
	if !s.ended() {
		t.Error("NBD_OPT_EXPORT_NAME before TLS did not end the session")
	}
}

func TestExportName(t *testing.T) {
	for _, noZeroes := range []bool{false, true} {
		s := startSession(t, testServer(oneExport{feat: allFeatures}))
		cf := uint32(flagCFixedNewstyle)
		n := 10 + exportNameZeroes
		if noZeroes {
			cf |= flagCNoZeroes
			n = 10
		}
		s.greet(cf)
		s.option(optExportName, []byte("x"))
		b := s.read(n)
		if binary.BigEndian.Uint64(b) != 1<<20 || !bytes.Equal(b[10:], make([]byte, n-10)) {
			t.Errorf("no zeroes %v: reply %x", noZeroes, b)
		}
		// Transmission: a read works.
		s.write(requestBytes(0, cmdRead, 7, 0, 512))
		r := s.read(16 + 512)
		if binary.BigEndian.Uint32(r) != simpleReplyMagic || binary.BigEndian.Uint64(r[8:]) != 7 {
			t.Errorf("read reply %x", r[:16])
		}
	}
}

func TestTooManyOptions(t *testing.T) {
	s := startSession(t, testServer(oneExport{}))
	s.greet(flagCFixedNewstyle)
	for range maxOptions {
		s.option(99, nil)
		s.reply(99)
	}
	if !s.ended() {
		t.Error("the server takes more than maxOptions options")
	}
}
