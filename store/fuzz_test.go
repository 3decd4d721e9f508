package store_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/daxstack/daxstack/store"
)

// FuzzDamagedDB opens damaged copies of a real database (the one
// populated makes: a devices bucket with branch pages, leaves, poison,
// holders, events) and uses them. The input is a script of damage,
// applied in order to the good file (see damage):
//
//	op 0: flip n bytes at an offset (xor with bytes of the script)
//	op 1: truncate at an offset
//	op 2: zero a page
//	op 3: swap two pages
//	op 4: write a small number (or all ones) as 2, 4 or 8 bytes at an
//	      offset, which is how counts, positions and page ids go wrong
//
// Every Open and every transaction must answer nil or ErrCorrupt (or
// ErrSchemaTooNew, or ErrNotFound for a record asked for by key), never
// panic or fault; a refused Open and an Open that succeeds must both
// leave the file byte for byte as it was (no file holding anything is
// ever started over); and after an Update that commits, the file must
// still open. Run it with
//
//	go test ./store -run '^$' -fuzz FuzzDamagedDB -fuzztime 60s
//
// The seed corpus is in testdata/fuzz/FuzzDamagedDB.
func FuzzDamagedDB(f *testing.F) {
	good := goodDB(f)
	f.Add([]byte{1, 0x00, 0x20, 0x00})                   // truncate at 8192
	f.Add([]byte{0, 0x00, 0x30, 0x08, 16, 0xff, 0xff})   // flip 16 bytes mid-file
	f.Add([]byte{2, 3})                                  // zero page 3
	f.Add([]byte{3, 2, 4})                               // swap pages 2 and 4
	f.Add([]byte{4, 0x00, 0x30, 0x0a, 0x01, 0x02, 0xff}) // a count of 0xffff
	f.Add([]byte{4, 0x00, 0x10, 0x10, 0x02, 0x08, 0x40}) // a page id of 0x40
	f.Add([]byte{0, 0x00, 0x00, 0x00, 1, 0x01})          // meta 0's magic
	f.Add([]byte{2, 0, 2, 1})                            // both meta pages zeroed
	f.Add([]byte{1, 0x00, 0x00, 0x00})                   // truncated to nothing
	f.Add([]byte{4, 0x00, 0x40, 0x10, 0x00, 0x04, 0x00}) // an element's position zeroed
	f.Fuzz(func(t *testing.T, script []byte) {
		b := damage(good, script)
		dir := fuzzDir(t)
		p := filepath.Join(dir, "daxstack.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			db, err := store.Open(p, store.Options{ReadOnly: ro, Timeout: time.Second})
			after, rerr := os.ReadFile(p)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(b) > 0 && !bytes.Equal(after, b) {
				t.Fatalf("ro=%v: Open (err %v) changed a file that held %d bytes", ro, err, len(b))
			}
			if err != nil {
				if !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrSchemaTooNew) &&
					!(errors.Is(err, store.ErrNotFound) && (ro || len(b) == 0)) {
					t.Fatalf("ro=%v: Open: %v; want ErrCorrupt", ro, err)
				}
				continue
			}
			corrupt := useAll(t, db)
			committed := corrupt == nil && !ro && db.Broken() == nil
			if err := db.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if committed {
				// The store wrote to a file it accepted: what it wrote
				// must be sound.
				db, err := store.Open(p, store.Options{Timeout: time.Second})
				if err != nil {
					t.Fatalf("the file does not open after a committed Update: %v", err)
				}
				db.Close()
			}
			if len(b) == 0 {
				return // the zero-length file became a new database
			}
		}
	})
}

var (
	goodOnce  sync.Once
	goodBytes []byte
	goodErr   error
)

// goodDB returns the bytes of the populated database, made once.
func goodDB(f *testing.F) []byte {
	goodOnce.Do(func() {
		dir, err := os.MkdirTemp("", "daxstack-fuzz-good-")
		if err != nil {
			goodErr = err
			return
		}
		defer os.RemoveAll(dir)
		goodBytes, goodErr = os.ReadFile(populated(f, dir))
	})
	if goodErr != nil {
		f.Fatal(goodErr)
	}
	return goodBytes
}

func fuzzDir(t *testing.T) string {
	return memDir(t)
}

// damage applies the script to a copy of good (see FuzzDamagedDB).
func damage(good, script []byte) []byte {
	const ps = 4096
	b := bytes.Clone(good)
	r := script
	next := func() int {
		if len(r) == 0 {
			return 0
		}
		c := int(r[0])
		r = r[1:]
		return c
	}
	offset := func() int { // three bytes, big-endian, within the file
		o := next()<<16 | next()<<8 | next()
		if len(b) == 0 {
			return 0
		}
		return o % len(b)
	}
	page := func() int {
		n := len(b) / ps
		if n == 0 {
			return -1
		}
		return next() % n
	}
	for ops := 0; len(r) > 0 && ops < 8; ops++ {
		switch next() % 5 {
		case 0:
			at, n := offset(), 1+next()%32
			for i := at; i < at+n && i < len(b); i++ {
				x := byte(next())
				if x == 0 {
					x = 0xff
				}
				b[i] ^= x
			}
		case 1:
			o := next()<<16 | next()<<8 | next()
			if o < len(b) {
				b = b[:o]
			}
		case 2:
			if p := page(); p >= 0 {
				clear(b[p*ps : (p+1)*ps])
			}
		case 3:
			p, q := page(), page()
			if p >= 0 && q >= 0 && p != q {
				tmp := bytes.Clone(b[p*ps : (p+1)*ps])
				copy(b[p*ps:(p+1)*ps], b[q*ps:(q+1)*ps])
				copy(b[q*ps:(q+1)*ps], tmp)
			}
		case 4:
			at, width, v := offset(), []int{2, 4, 8}[next()%3], uint64(next())
			if v == 0xff {
				v = ^uint64(0)
			}
			if at+width <= len(b) {
				var w [8]byte
				binary.LittleEndian.PutUint64(w[:], v)
				copy(b[at:at+width], w[:width])
			}
		}
	}
	return b
}
