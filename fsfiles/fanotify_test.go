package fsfiles

import (
	"errors"
	"testing"
)

// fanInfo encodes one information record with a file handle and, for the
// DFID_NAME types, a name.
func fanInfo(typ byte, h fanHandle, name string) []byte {
	body := make([]byte, 8+8+len(h.Bytes))
	le.PutUint32(body[8:], uint32(len(h.Bytes)))
	le.PutUint32(body[12:], uint32(h.Type))
	copy(body[16:], h.Bytes)
	if typ != fanInfoFID && typ != fanInfoDFID {
		body = append(append(body, name...), 0)
	}
	rec := make([]byte, 4, 4+len(body))
	rec[0] = typ
	le.PutUint16(rec[2:], uint16(4+len(body)))
	return append(rec, body...)
}

// fanEventBuf encodes one event.
func fanEventBuf(mask uint64, infos ...[]byte) []byte {
	b := make([]byte, fanEventMetaSize)
	b[4] = fanMetadataVersion
	le.PutUint16(b[6:], fanEventMetaSize)
	le.PutUint64(b[8:], mask)
	le.PutUint32(b[16:], ^uint32(0)) // FAN_NOFD
	for _, in := range infos {
		b = append(b, in...)
	}
	le.PutUint32(b[0:], uint32(len(b)))
	return b
}

func TestParseFanEvents(t *testing.T) {
	dir := fanHandle{Type: 1, Bytes: "\x02\x00\x00\x00\x00\x00\x00\x00"}
	obj := fanHandle{Type: 1, Bytes: "\x0c\x00\x00\x00\x07\x00\x00\x00"}
	buf := append(fanEventBuf(fanCreate, fanInfo(fanInfoDFIDName, dir, "new file"), fanInfo(fanInfoFID, obj, "")),
		fanEventBuf(fanModify, fanInfo(fanInfoFID, obj, ""))...)
	buf = append(buf, fanEventBuf(fanRename|fanOnDir, fanInfo(fanInfoOldDFIDNam, dir, "a"), fanInfo(fanInfoNewDFIDNam, obj, "b"), fanInfo(fanInfoFID, obj, ""))...)
	buf = append(buf, fanEventBuf(fanQOverflow)...)
	var got []fanEvent
	if err := parseFanEvents(buf, func(e fanEvent) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	want := []fanEvent{
		{Mask: fanCreate, Dir: dir, Name: "new file", HasDir: true, Obj: obj, HasObj: true},
		{Mask: fanModify, Obj: obj, HasObj: true},
		{Mask: fanRename | fanOnDir, OldDir: dir, OldName: "a", HasOld: true, Dir: obj, Name: "b", HasDir: true, Obj: obj, HasObj: true},
		{Mask: fanQOverflow, OverflowOrError: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	for name, b := range map[string][]byte{
		"short":      buf[:10],
		"bad length": append(fanEventBuf(fanModify)[:0:0], 0xff, 0xff, 0, 0, 3, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		"no nul":     fanEventBuf(fanCreate, fanInfo(fanInfoFID, dir, "")[:0:0], func() []byte { r := fanInfo(fanInfoDFIDName, dir, "x"); return r[:len(r)-1] }()),
	} {
		if err := parseFanEvents(b, func(fanEvent) {}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseFanEvents(f *testing.F) {
	h := fanHandle{Type: 1, Bytes: "12345678"}
	f.Add(fanEventBuf(fanCreate, fanInfo(fanInfoDFIDName, h, "x"), fanInfo(fanInfoFID, h, "")))
	f.Add(fanEventBuf(fanModify, fanInfo(fanInfoFID, h, "")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseFanEvents(b, func(e fanEvent) {
			if len(e.Obj.Bytes) > 128 || len(e.Dir.Bytes) > 128 || len(e.OldDir.Bytes) > 128 {
				t.Fatalf("handle longer than MAX_HANDLE_SZ: %+v", e)
			}
		})
	})
}
