package fsfiles

import (
	"errors"
	"slices"
	"testing"
)

// fiemapReply builds a FIEMAP reply.
func fiemapReply(count uint32, exts ...fileExtent) []byte {
	b := make([]byte, fiemapHeadSize+int(count)*fiemapExtSize)
	le.PutUint32(b[20:], uint32(len(exts)))
	le.PutUint32(b[24:], count)
	for i, e := range exts {
		x := b[fiemapHeadSize+i*fiemapExtSize:]
		le.PutUint64(x[0:], e.Logical)
		le.PutUint64(x[8:], e.Physical)
		le.PutUint64(x[16:], e.Length)
		le.PutUint32(x[40:], e.Flags)
	}
	return b
}

func TestDecodeFiemap(t *testing.T) {
	exts := []fileExtent{{0, 1 << 20, 8192, 0}, {8192, 4 << 20, 4096, fiemapExtentUnwritten | fiemapExtentLast}, {16384, 0, 4096, fiemapExtentDelalloc}}
	got, err := decodeFiemap(fiemapReply(3, exts...))
	if err != nil || !slices.Equal(got, exts) {
		t.Fatalf("decode: %v %+v", err, got)
	}
	if !got[0].located() || !got[1].located() || got[2].located() {
		t.Errorf("located: %v %v %v", got[0].located(), got[1].located(), got[2].located())
	}
	b := fiemapReply(1, exts[0])
	le.PutUint32(b[20:], 2)
	if _, err := decodeFiemap(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("mapped > count: %v", err)
	}
	if _, err := decodeFiemap(fiemapReply(1, fileExtent{Logical: 1 << 63, Length: 1 << 63})); !errors.Is(err, ErrMalformed) {
		t.Errorf("wrap: %v", err)
	}
}

func FuzzDecodeFiemap(f *testing.F) {
	f.Add(fiemapReply(2, fileExtent{0, 4096, 4096, 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		exts, err := decodeFiemap(b)
		if err != nil {
			return
		}
		for _, e := range exts {
			if e.Logical+e.Length < e.Logical || e.Physical+e.Length < e.Physical {
				t.Fatalf("wrap %+v", e)
			}
		}
		// What is located converts to sectors without wrapping.
		for _, m := range appendMapped(nil, exts, 1, 0) {
			if m.Start+m.Len < m.Start {
				t.Fatalf("mapped wraps %+v", m)
			}
		}
	})
}

// getbmapxReply builds a GETBMAPX reply: header then records of (offset,
// block, length, oflags), in 512-byte units.
func getbmapxReply(count int32, recs ...[4]int64) []byte {
	b := make([]byte, max(int(count), len(recs)+1)*getbmapxSize)
	le.PutUint32(b[24:], uint32(count))
	le.PutUint32(b[28:], uint32(len(recs)))
	for i, r := range recs {
		x := b[(i+1)*getbmapxSize:]
		le.PutUint64(x[0:], uint64(r[0]))
		le.PutUint64(x[8:], uint64(r[1]))
		le.PutUint64(x[16:], uint64(r[2]))
		le.PutUint32(x[36:], uint32(r[3]))
	}
	return b
}

func TestDecodeGetbmapx(t *testing.T) {
	got, last, err := decodeGetbmapx(getbmapxReply(5,
		[4]int64{0, 120, 8, 0}, [4]int64{8, -1, 8, 0}, [4]int64{16, 96, 8, bmvOfPrealloc}, [4]int64{24, -2, 8, bmvOfLast}))
	want := []fileExtent{
		{Logical: 0, Physical: 120 * 512, Length: 4096},
		{Logical: 16 * 512, Physical: 96 * 512, Length: 4096, Flags: fiemapExtentUnwritten},
		{Logical: 24 * 512, Length: 4096, Flags: fiemapExtentDelalloc},
	}
	if err != nil || !last || !slices.Equal(got, want) {
		t.Fatalf("decode: %v %v\n got %+v\nwant %+v", err, last, got, want)
	}
	if _, _, err := decodeGetbmapx(getbmapxReply(2, [4]int64{0, 1, 1, 0}, [4]int64{1, 2, 1, 0})); !errors.Is(err, ErrMalformed) {
		t.Errorf("entries past count: %v", err)
	}
	if _, _, err := decodeGetbmapx(getbmapxReply(2, [4]int64{0, -3, 1, 0})); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad block: %v", err)
	}
}

func FuzzDecodeGetbmapx(f *testing.F) {
	f.Add(getbmapxReply(3, [4]int64{0, 120, 8, 0}, [4]int64{8, -2, 8, 4}))
	f.Fuzz(func(t *testing.T, b []byte) {
		exts, _, err := decodeGetbmapx(b)
		if err != nil {
			return
		}
		for _, e := range exts {
			if e.Logical+e.Length < e.Logical || e.Physical+e.Length < e.Physical || e.Length == 0 {
				t.Fatalf("bad extent %+v", e)
			}
		}
	})
}
