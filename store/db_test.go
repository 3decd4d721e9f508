package store_test

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/store"
)

// TestOpenCreates opens a path whose directories do not exist: they are
// created 0700, the file 0600, and the file holds the schema version and
// every bucket.
func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "daxstack")
	path := filepath.Join(dir, "daxstack.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{{dir, fs.ModeDir | 0o700}, {filepath.Dir(dir), fs.ModeDir | 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s has mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	bdb.View(func(tx *bolt.Tx) error {
		var names []string
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
		compareLists(t, "buckets", names, []string{"devices", "events", "holders", "leaves", "meta", "poison"})
		if v := tx.Bucket([]byte("meta")).Get([]byte("schema")); string(v) != "\x00\x00\x00\x00\x00\x00\x00\x01" {
			t.Errorf("schema version stored as %q, want 1 as 8 bytes big-endian", v)
		}
		return nil
	})
}

// TestOpenExistingWritesNothing opens and closes a populated database in
// every way that succeeds or refuses, and checks that the file's bytes and
// modification time do not change.
func TestOpenExistingWritesNothing(t *testing.T) {
	path := newDB(t)
	db := mustOpen(t, path, store.Options{})
	err := db.Update(func(tx *store.Tx) error {
		if err := tx.PutDevice(sampleDevice("a")); err != nil {
			return err
		}
		_, err := tx.AppendEvents(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	time.Sleep(10 * time.Millisecond) // so that a write would show in the mtime
	before := testenv.StateOf(t, path)
	for _, o := range []store.Options{{}, {ReadOnly: true}, {Timeout: time.Second}} {
		for range 3 {
			db, err := store.Open(path, o)
			if err != nil {
				t.Fatal(err)
			}
			db.View(func(tx *store.Tx) error { _, err := tx.Devices(); return err })
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.SameState(t, path, before, "Open, View, Close")
}

// TestOpenRefuses covers the files Open must refuse, and checks each is
// left as it was.
func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, path string) // makes the file at path
		ro      bool
		want    error
		says    []string // in the message
	}{
		{"schema version 2", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), be64(2)) })
		}, false, store.ErrSchemaTooNew, []string{"version 2", "up to 1"}},
		{"schema version 2, read-only", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), be64(2)) })
		}, true, store.ErrSchemaTooNew, []string{"version 2", "up to 1"}},
		{"schema version 2 with other buckets", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				b, _ := tx.CreateBucket([]byte("meta"))
				tx.CreateBucket([]byte("stacks"))
				return b.Put([]byte("schema"), be64(1<<40))
			})
		}, false, store.ErrSchemaTooNew, []string{"version 1099511627776", "up to 1"}},
		{"schema version 0", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), be64(0)) })
		}, false, store.ErrCorrupt, []string{"version 0"}},
		{"schema version of 4 bytes", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 0, 0, 1}) })
		}, false, store.ErrCorrupt, []string{"4 bytes"}},
		{"no schema version", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("schema")) })
		}, false, store.ErrCorrupt, []string{"no schema version"}},
		{"a bucket missing", func(t *testing.T, path string) {
			makeDB(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("holders")) })
		}, false, store.ErrCorrupt, []string{`"holders"`}},
		{"someone else's bbolt file", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("v1")); return err })
		}, false, store.ErrCorrupt, []string{"not a daxstack database"}},
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("daxstack ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, store.ErrCorrupt, []string{"not a usable bbolt file"}},
		{"an empty bbolt file, read-only", func(t *testing.T, path string) {
			freshBolt(t, path)
		}, true, store.ErrNotFound, []string{"never initialised"}},
		{"an empty bbolt file written to, read-only", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error { return nil })
		}, true, store.ErrNotFound, []string{"never initialised"}},
		{"a bbolt file whose buckets were all deleted, keeping no freelist", func(t *testing.T, path string) {
			bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer bdb.Close()
			if err := bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
				t.Fatal(err)
			}
			if err := bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("x")) }); err != nil {
				t.Fatal(err)
			}
		}, false, store.ErrCorrupt, []string{"no buckets", "nothing reaches", "not starting over"}},
		{"a daxstack database whose root page lost its keys", func(t *testing.T, path string) {
			makeDB(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for m := range 2 { // the root page of both meta pages: count = 0
				root := binary.LittleEndian.Uint64(b[m*4096+32:])
				binary.LittleEndian.PutUint16(b[root*4096+10:], 0)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, store.ErrCorrupt, []string{"no buckets", "nothing reaches", "not starting over"}},
		{"an empty file, read-only", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, store.ErrNotFound, []string{"empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daxstack.db")
			tc.prepare(t, path)
			time.Sleep(10 * time.Millisecond)
			before := testenv.StateOf(t, path)
			db, err := store.Open(path, store.Options{ReadOnly: tc.ro, Timeout: time.Second})
			if err == nil {
				db.Close()
				t.Fatal("Open accepted the file")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v; want %v", err, tc.want)
			}
			for _, s := range append(tc.says, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the error %q does not say %q", err, s)
				}
			}
			testenv.SameState(t, path, before, "the refused Open")
		})
	}
}

// freshBolt makes the file bbolt's own initialisation writes, with no
// transaction committed to it.
func freshBolt(t *testing.T, path string) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func makeDB(t *testing.T, path string) {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// TestOpenReadOnlyMissing: a read-only open of a missing file creates
// neither it nor its directory.
func TestOpenReadOnlyMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	path := filepath.Join(dir, "daxstack.db")
	_, err := store.Open(path, store.Options{ReadOnly: true})
	if !errors.Is(err, store.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open: %v; want ErrNotFound and fs.ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the read-only open created %s: %v", dir, err)
	}
	if _, err := store.Open("", store.Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open(\"\"): %v; want ErrInvalid", err)
	}
}

// TestOpenInitialisesEmptyBbolt: a bbolt file with no buckets whose
// pages are all accounted for holds nothing: an initialisation cut short
// leaves one; a read-write open finishes it. (One whose pages hold
// something unreachable is refused: see TestOpenRefuses.)
func TestOpenInitialisesEmptyBbolt(t *testing.T) {
	for _, name := range []string{"empty bbolt file", "empty bbolt file written to", "zero-length file"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daxstack.db")
			switch name {
			case "zero-length file":
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			case "empty bbolt file written to":
				rawUpdate(t, path, func(tx *bolt.Tx) error { return nil })
			default:
				freshBolt(t, path)
			}
			db := mustOpen(t, path, store.Options{})
			err := db.Update(func(tx *store.Tx) error { return tx.PutDevice(sampleDevice("x")) })
			if err != nil {
				t.Fatal(err)
			}
			db.View(func(tx *store.Tx) error {
				v, err := tx.Meta("schema")
				if err != nil || string(v) != string(be64(store.SchemaVersion)) {
					t.Errorf("schema %q, %v", v, err)
				}
				return nil
			})
		})
	}
}

// TestReadOnlyDB: a read-only DB reads, refuses Update and refuses writes
// inside View.
func TestReadOnlyDB(t *testing.T) {
	path := newDB(t)
	rw := mustOpen(t, path, store.Options{})
	if err := rw.Update(func(tx *store.Tx) error { return tx.PutDevice(sampleDevice("a")) }); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	before := testenv.StateOf(t, path)
	db := mustOpen(t, path, store.Options{ReadOnly: true})
	called := false
	err := db.Update(func(tx *store.Tx) error { called = true; return nil })
	if !errors.Is(err, store.ErrReadOnly) || called {
		t.Errorf("Update on a read-only DB: %v (fn called: %v); want ErrReadOnly", err, called)
	}
	err = db.View(func(tx *store.Tx) error {
		if tx.Writable() {
			t.Error("a View transaction is writable")
		}
		if _, err := tx.Device("a"); err != nil {
			t.Error(err)
		}
		writes := map[string]error{
			"PutDevice":    tx.PutDevice(sampleDevice("b")),
			"DeleteDevice": tx.DeleteDevice("a"),
			"SetPoison":    tx.SetPoison("l", pois(1, 2)),
			"SetMeta":      tx.SetMeta("k", []byte("v")),
			"TrimEvents":   tx.TrimEvents(0),
		}
		_, writes["AppendEvents"] = tx.AppendEvents(evs(1))
		for name, err := range writes {
			if name == "TrimEvents" {
				continue // nothing to trim: no write attempted
			}
			if err == nil {
				t.Errorf("%s in a View succeeded", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	testenv.SameState(t, path, before, "the read-only DB")
}
