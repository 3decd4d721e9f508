package fsfiles

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

var le = binary.LittleEndian

// fsmapReply builds a GETFSMAP reply of recs in a head of count slots.
func fsmapReply(count uint32, oflags uint32, recs ...fsmapRecord) []byte {
	b := make([]byte, fsmapHeadSize+int(count)*fsmapRecSize)
	le.PutUint32(b[4:], oflags)
	le.PutUint32(b[8:], count)
	le.PutUint32(b[12:], uint32(len(recs)))
	for i, r := range recs {
		encodeFsmapRec(b[fsmapHeadSize+i*fsmapRecSize:], r)
	}
	return b
}

func TestDecodeFsmap(t *testing.T) {
	recs := []fsmapRecord{
		{Device: 0x700, Flags: fmrOfSpecialOwner, Physical: 0, Owner: fmrOwner('X', 1), Length: 4096},
		{Device: 0x700, Physical: 98304, Owner: 131, Offset: 0, Length: 1 << 20},
		{Device: 0x700, Flags: fmrOfSpecialOwner | fmrOfLast, Physical: 1<<20 + 98304, Owner: ownFree, Length: 4096},
	}
	of, got, err := decodeFsmap(fsmapReply(4, fmhOfDevT, recs...))
	if err != nil || of != fmhOfDevT || !slices.Equal(got, recs) {
		t.Fatalf("decode: %v %x %+v", err, of, got)
	}
	bad := fsmapReply(2, 0, recs[:2]...)
	le.PutUint32(bad[12:], 3) // more entries than slots
	if _, _, err := decodeFsmap(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("entries > count: %v", err)
	}
	wrap := fsmapReply(1, 0, fsmapRecord{Physical: 1 << 63, Length: 1 << 63})
	if _, _, err := decodeFsmap(wrap); !errors.Is(err, ErrMalformed) {
		t.Errorf("wrapping record: %v", err)
	}
	if _, _, err := decodeFsmap(make([]byte, 100)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short head: %v", err)
	}
	if encodeDev(7, 0) != 0x700 || encodeDev(259, 300) != 300&0xff|259<<8|(300&^0xff)<<12 {
		t.Errorf("encodeDev")
	}
}

func FuzzDecodeFsmap(f *testing.F) {
	f.Add(fsmapReply(2, 1, fsmapRecord{Physical: 512, Owner: 5, Length: 4096}, fsmapRecord{Flags: 0x30, Owner: ownFree, Length: 1}))
	f.Add(fsmapReply(0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, recs, err := decodeFsmap(b)
		if err != nil {
			return
		}
		if len(recs) > (len(b)-fsmapHeadSize)/fsmapRecSize {
			t.Fatalf("%d records from %d bytes", len(recs), len(b))
		}
		for _, r := range recs {
			if r.Physical+r.Length < r.Physical {
				t.Fatalf("wrapping record %+v", r)
			}
		}
	})
}
