package nbdleaf_test

import (
	"encoding/binary"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbdleaf"
)

// FuzzCanonical: IsRef and Canonical never panic, Canonical is a fixed
// point, and what it accepts IsRef accepts.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		"nbd://h/e", "nbd+tcp://h:1/e", "nbds://[::1]:2/x%2Fy", "nbd+unix:///e?socket=/s", "nbds+unix:///?socket=/a/../b",
		"nbd+unix:///e?socket=rel", "nbd://h:99999/", "NBD+UNIX:///%00?socket=/s", "nbd://h/e?socket=/s", "/dev/pmem0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := nbdleaf.Canonical(s)
		if err != nil {
			return
		}
		if !nbdleaf.IsRef(s) || !nbdleaf.IsRef(c) {
			t.Fatalf("Canonical(%q) = %q, but IsRef says no", s, c)
		}
		if again, err := nbdleaf.Canonical(c); err != nil || again != c {
			t.Fatalf("Canonical(%q) = %q; Canonical of that = %q, %v", s, c, again, err)
		}
		id := nbdleaf.Identity{Kind: nbdleaf.Kind, URI: s, Size: 1}
		if !id.Same(nbdleaf.Identity{Kind: nbdleaf.Kind, URI: c, Size: 1}) {
			t.Fatalf("%q and its canonical form %q are not the same identity", s, c)
		}
	})
}

// FuzzParseIdentity: stored identities never panic the reader, and what
// it accepts marshals back to something it reads the same.
func FuzzParseIdentity(f *testing.F) {
	f.Add([]byte(`{"kind":"nbd","uri":"nbd://h:1/e","size":4096,"description":"d"}`))
	f.Add([]byte(`{"kind":"nbd","uri":"nbd+unix:///e?socket=/s","size":0}`))
	f.Add([]byte(`{"kind":"file","dev":1,"ino":2}`))
	f.Add([]byte(`{"kind":"nbd","uri":"nbd://h/e","size":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := nbdleaf.ParseIdentity(b)
		if err != nil {
			return
		}
		if !id.Same(id) {
			t.Fatalf("%+v is not the same as itself", id)
		}
		c, _ := nbdleaf.Canonical(id.URI)
		if c != id.URI {
			t.Fatalf("ParseIdentity left the URI %q not canonical", id.URI)
		}
	})
}

// FuzzBadSectors feeds the conversion of a server's block status extents
// (hostile input) with anything: it never panics, refuses what breaks the
// rules, and otherwise says exactly which sectors hold a flagged byte of
// what it covers, compared with a byte-by-byte model.
func FuzzBadSectors(f *testing.F) {
	f.Add(uint16(0), uint16(4096), []byte{0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 14, 0, 0, 0, 0, 0})
	f.Add(uint16(700), uint16(3000), []byte{0, 0, 0, 10, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, lo16, n16 uint16, raw []byte) {
		lo, hi := int64(lo16), int64(lo16)+int64(n16)
		var ext []nbd.Extent
		pos := lo
		for i := 0; i+8 <= len(raw) && len(ext) < 64; i += 8 {
			l := int64(binary.BigEndian.Uint32(raw[i:]) % 70000)
			fl := binary.BigEndian.Uint32(raw[i+4:])
			off := pos
			if fl&0x80000000 != 0 { // sometimes, a hostile offset
				off = pos + int64(int8(fl>>16))
			}
			ext = append(ext, nbd.Extent{Offset: off, Length: l, Flags: fl & 3})
			pos = off + l
		}
		bad, next, err := nbdleaf.BadSectors(ext, lo, hi)
		if err != nil {
			return
		}
		if next <= lo || next > hi {
			t.Fatalf("next %d outside (%d, %d]", next, lo, hi)
		}
		// The model: the flagged bytes of [lo, next).
		flagged := map[int64]bool{}
		at := lo
		for _, e := range ext {
			if e.Offset != at || e.Length <= 0 {
				t.Fatalf("accepted extents that do not follow one another: %+v", ext)
			}
			for b := at; b < min(at+e.Length, next); b++ {
				if e.Flags&nbdleaf.BadFlag != 0 {
					flagged[b/512] = true
				}
			}
			at += e.Length
			if at >= next {
				break
			}
		}
		got := extent.Of(bad...)
		for s := uint64(lo / 512); s < uint64((next+511)/512); s++ {
			if got.Contains(s) != flagged[int64(s)] {
				t.Fatalf("sector %d: bad %v, flagged bytes %v (extents %+v, [%d, %d), next %d)", s, got.Contains(s), flagged[int64(s)], ext, lo, hi, next)
			}
		}
		if b := got.Bounds(); !got.Empty() && (b.Start < uint64(lo/512) || b.End() > uint64((next+511)/512)) {
			t.Fatalf("bad sectors %v outside what was covered", got)
		}
	})
}
