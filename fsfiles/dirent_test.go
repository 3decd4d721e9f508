package fsfiles

import (
	"errors"
	"slices"
	"testing"
)

// direntBuf encodes linux_dirent64 records.
func direntBuf(ents ...dirent) []byte {
	var b []byte
	for i, d := range ents {
		rl := (direntHead + len(d.Name) + 1 + 7) &^ 7
		r := make([]byte, rl)
		le.PutUint64(r[0:], d.Ino)
		le.PutUint64(r[8:], uint64(i+1))
		le.PutUint16(r[16:], uint16(rl))
		r[18] = d.Type
		copy(r[direntHead:], d.Name)
		b = append(b, r...)
	}
	return b
}

func TestParseDirents(t *testing.T) {
	in := []dirent{{2, dtDir, "."}, {1, dtDir, ".."}, {12, dtReg, "a file"}, {13, dtDir, "d"}, {14, dtLnk, "l\xffx"}}
	var got []dirent
	if err := parseDirents(direntBuf(in...), func(d dirent) { got = append(got, d) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, in[2:]) {
		t.Errorf("got %+v, want %+v", got, in[2:])
	}
	for name, b := range map[string][]byte{
		"slash":     direntBuf(dirent{1, dtReg, "a/b"}),
		"no name":   direntBuf(dirent{1, dtReg, ""}),
		"truncated": direntBuf(dirent{1, dtReg, "abc"})[:20],
	} {
		if err := parseDirents(b, func(dirent) {}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseDirents(f *testing.F) {
	f.Add(direntBuf(dirent{12, dtReg, "a"}, dirent{13, dtDir, "bb"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []dirent
		if err := parseDirents(b, func(d dirent) { got = append(got, d) }); err != nil {
			return
		}
		// Valid input round-trips through the encoder.
		var again []dirent
		if err := parseDirents(direntBuf(got...), func(d dirent) { again = append(again, d) }); err != nil || !slices.Equal(got, again) {
			t.Fatalf("round trip: %v %+v %+v", err, got, again)
		}
	})
}
