package store_test

// Damaged database files (#10 item 7): every Open and every transaction
// answers ErrCorrupt, never a signal or a panic, and never starts over on
// a file that holds anything. The fuzz target is in fuzz_test.go.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// populated makes a database with enough devices for the devices bucket
// to need branch pages, plus leaves, poison, holders and events, and
// returns its path (closed).
func populated(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "daxstack.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *store.Tx) error {
		for i := range 60 {
			d := sampleDevice(fmt.Sprintf("dev%03d", i))
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		for i := range 4 {
			id := fmt.Sprintf("leaf%d", i)
			if err := tx.PutLeaf(sampleLeaf(id)); err != nil {
				return err
			}
			if err := tx.SetPoison(id, extent.Of(extent.Extent{Start: uint64(i) * 8, Len: 3})); err != nil {
				return err
			}
		}
		if err := tx.PutHolder(sampleHolder("dev001")); err != nil {
			return err
		}
		_, err := tx.AppendEvents(evs(40))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// memDir returns a new directory on tmpfs when there is one (commits
// fsync, which a disk makes slow for tests that open hundreds of files),
// else the test's temporary directory.
func memDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "daxstack-store-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// useAll runs every read and a write on db and fails t on any error that
// is not ErrCorrupt (or ErrNotFound, for a record asked for by key). It
// returns the first ErrCorrupt error met.
func useAll(t testing.TB, db *store.DB) error {
	t.Helper()
	var corrupt error
	check := func(what string, err error, notFoundOK bool) {
		switch {
		case err == nil, notFoundOK && errors.Is(err, store.ErrNotFound):
		case errors.Is(err, store.ErrCorrupt):
			if corrupt == nil {
				corrupt = err
			}
		default:
			t.Errorf("%s: %v; want nil or ErrCorrupt", what, err)
		}
	}
	check("View", db.View(func(tx *store.Tx) error {
		_, err := tx.Devices()
		check("Devices", err, false)
		_, _, err = tx.ScanDevices()
		check("ScanDevices", err, false)
		_, err = tx.Device("dev007")
		check("Device", err, true)
		_, _, err = tx.ScanLeaves()
		check("ScanLeaves", err, false)
		_, _, err = tx.ScanHolders()
		check("ScanHolders", err, false)
		for i := range 4 {
			_, err = tx.Poison(fmt.Sprintf("leaf%d", i))
			check("Poison", err, false)
		}
		check("Events", tx.Events(0, func(rmapchain.Event) error { return nil }), false)
		_, err = tx.ScanEvents(0, func(rmapchain.Event) error { return nil })
		check("ScanEvents", err, false)
		_, err = tx.LastSeq()
		check("LastSeq", err, false)
		_, err = tx.Meta("schema")
		check("Meta", err, true)
		return nil
	}), false)
	uerr := db.Update(func(tx *store.Tx) error {
		if err := tx.PutDevice(sampleDevice("zzz-new")); err != nil {
			return err
		}
		if err := tx.DeleteDevice("dev050"); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.SetPoison("leaf1", extent.Set{}); err != nil {
			return err
		}
		if _, err := tx.AppendEvents(evs(3)); err != nil {
			return err
		}
		return tx.TrimEvents(10)
	})
	if !errors.Is(uerr, store.ErrReadOnly) {
		check("Update", uerr, false)
	}
	return corrupt
}

// TestTruncated8192: the file cut to its two meta pages died with SIGBUS
// inside bbolt.
func TestTruncated8192(t *testing.T) {
	path := populated(t, t.TempDir())
	for _, size := range []int64{8192, 8192 + 100, 4096, 1000, 12288} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "daxstack.db")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			before := testenv.StateOf(t, p)
			for _, ro := range []bool{false, true} {
				db, err := store.Open(p, store.Options{ReadOnly: ro, Timeout: time.Second})
				if err == nil {
					db.Close()
					t.Fatalf("ro=%v: Open of a truncated file succeeded", ro)
				}
				if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "corrupt database: ") {
					t.Fatalf("ro=%v: %v; want corrupt database: ...", ro, err)
				}
				t.Logf("ro=%v: %v", ro, err)
			}
			testenv.SameState(t, p, before, "Open of the truncated file")
		})
	}
}

// TestFlippedEveryPage flips 16 bytes in the middle of every page, and
// over the page header's id, flags, count and overflow and the first
// element, one at a time (FuzzDamagedDB goes further): Open refuses,
// or every read and write answers nil or ErrCorrupt. A refused Open
// leaves the file as it was.
func TestFlippedEveryPage(t *testing.T) {
	path := populated(t, t.TempDir())
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const ps = 4096
	dir := memDir(t)
	refused, used := 0, 0
	for page := 0; page*ps < len(orig); page++ {
		for _, at := range []int{ps / 2, 4} {
			b := bytes.Clone(orig)
			off := page*ps + at
			for i := off; i < off+16 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			p := filepath.Join(dir, fmt.Sprintf("p%d-%d.db", page, at))
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(p, store.Options{Timeout: time.Second})
			if err != nil {
				if !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrSchemaTooNew) {
					t.Fatalf("page %d +%d: Open: %v; want ErrCorrupt", page, at, err)
				}
				after, _ := os.ReadFile(p)
				if !bytes.Equal(after, b) {
					t.Fatalf("page %d +%d: the refused Open changed the file", page, at)
				}
				refused++
				continue
			}
			used++
			useAll(t, db)
			db.Close()
		}
	}
	t.Logf("%d damaged copies refused at Open, %d opened and used", refused, used)
	if refused == 0 {
		t.Error("no damaged copy was refused: the test flipped nothing that matters")
	}
}

// TestRecordDamageListed: one device's record does not decode; the lenient
// listing returns the others and names it, so the engine can show it
// broken instead of failing every command; it can then be deleted.
func TestRecordDamageListed(t *testing.T) {
	path := populated(t, t.TempDir())
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return errors.Join(
			tx.Bucket([]byte("devices")).Put([]byte("dev042"), []byte(`{"name":"dev042","active":7}`)),
			tx.Bucket([]byte("leaves")).Put([]byte("leaf2"), []byte(`{`)),
			tx.Bucket([]byte("holders")).Put([]byte("dev001"), []byte(`[]`)),
			tx.Bucket([]byte("events")).Put(be64(5), []byte(`{"seq":6}`)),
		)
	})
	db := mustOpen(t, path, store.Options{})
	view(t, db, func(tx *store.Tx) error {
		if _, err := tx.Devices(); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Devices: %v; want ErrCorrupt", err)
		}
		devs, bad, err := tx.ScanDevices()
		if err != nil || len(devs) != 59 || len(bad) != 1 || bad[0].Key != "dev042" || bad[0].Bucket != "devices" {
			t.Errorf("ScanDevices: %d good, bad %v, %v; want 59 and dev042", len(devs), bad, err)
		}
		ls, bad, err := tx.ScanLeaves()
		if err != nil || len(ls) != 3 || len(bad) != 1 || bad[0].Key != "leaf2" {
			t.Errorf("ScanLeaves: %d good, bad %v, %v", len(ls), bad, err)
		}
		hs, bad, err := tx.ScanHolders()
		if err != nil || len(hs) != 0 || len(bad) != 1 || bad[0].Key != "dev001" {
			t.Errorf("ScanHolders: %d good, bad %v, %v", len(hs), bad, err)
		}
		n := 0
		bad, err = tx.ScanEvents(0, func(rmapchain.Event) error { n++; return nil })
		if err != nil || n != 39 || len(bad) != 1 || bad[0].Key != "5" {
			t.Errorf("ScanEvents: %d good, bad %v, %v", n, bad, err)
		}
		return nil
	})
	update(t, db, func(tx *store.Tx) error { return tx.DeleteDevice("dev042") })
	view(t, db, func(tx *store.Tx) error {
		devs, err := tx.Devices()
		if err != nil || len(devs) != 59 {
			t.Errorf("after deleting the damaged record: %d, %v", len(devs), err)
		}
		return nil
	})
	if err := db.Broken(); err != nil {
		t.Errorf("record damage broke the DB: %v", err)
	}
}

// TestNotAFile: a directory is named as one; a FIFO, a socket or a device
// is refused before anything opens it for bbolt (a FIFO would block, and
// /dev/null would be "initialised").
func TestNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cases := []struct {
		name, path string
		says       string
		is         []error
	}{
		{"directory", dir, "is a directory", []error{store.ErrNotFile, syscall.EISDIR}},
		{"FIFO", fifo, "a FIFO", []error{store.ErrNotFile}},
		{"socket", sock, "a socket", []error{store.ErrNotFile}},
		{"/dev/null", "/dev/null", "a character device", []error{store.ErrNotFile}},
	}
	for _, c := range cases {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s ro=%v", c.name, ro), func(t *testing.T) {
				done := make(chan error, 1)
				go func() {
					db, err := store.Open(c.path, store.Options{ReadOnly: ro, Timeout: time.Second})
					if err == nil {
						db.Close()
					}
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Open blocked")
				}
				for _, is := range c.is {
					if !errors.Is(err, is) {
						t.Errorf("Open(%s): %v; want %v", c.path, err, is)
					}
				}
				if errors.Is(err, store.ErrCorrupt) || err == nil || !strings.Contains(err.Error(), c.says) {
					t.Errorf("Open(%s): %v; want it to say %q, not corrupt", c.path, err, c.says)
				}
			})
		}
	}
}

// TestCutWhileOpen: the file is cut short while a DB has it open. The
// next transaction answers ErrCorrupt (the file changed behind the DB's
// back), and so does every one after; Close works.
func TestCutWhileOpen(t *testing.T) {
	path := populated(t, t.TempDir())
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 8192); err != nil {
		t.Fatal(err)
	}
	called := false
	err = db.View(func(tx *store.Tx) error { called = true; _, err := tx.Devices(); return err })
	if !errors.Is(err, store.ErrCorrupt) || called {
		t.Fatalf("View after the cut: %v (fn called: %v); want ErrCorrupt before fn", err, called)
	}
	t.Log(err)
	if db.Broken() == nil {
		t.Error("Broken() is nil")
	}
	if err := db.Update(func(*store.Tx) error { return nil }); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Update: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestFaultInsideBbolt cuts the file short in the middle of a
// transaction, after the check that starts it: bbolt's read of a page
// past the new end is a SIGBUS, which must come back as ErrCorrupt, make
// the DB unusable (its handle is not to be trusted after a panic inside
// bbolt), and leave Close working.
func TestFaultInsideBbolt(t *testing.T) {
	for _, write := range []bool{false, true} {
		t.Run(fmt.Sprintf("write=%v", write), func(t *testing.T) {
			path := populated(t, t.TempDir())
			db, err := store.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			fn := func(tx *store.Tx) error {
				if err := os.Truncate(path, 8192); err != nil {
					t.Fatal(err)
				}
				if write {
					return tx.PutDevice(sampleDevice("dev060"))
				}
				_, err := tx.Devices()
				return err
			}
			if write {
				err = db.Update(fn)
			} else {
				err = db.View(fn)
			}
			if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "faulted") {
				t.Fatalf("%v; want ErrCorrupt naming the fault", err)
			}
			t.Log(err)
			if err := db.View(func(*store.Tx) error { t.Error("fn called on a broken DB"); return nil }); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("View after: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			// Opening again checks the file whole.
			if _, err := store.Open(path, store.Options{Timeout: time.Second}); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("reopen: %v", err)
			}
		})
	}
}

// TestCallerPanicGoesOn: a panic of the caller's own function is not
// damage: it reaches the caller, the transaction is rolled back and the
// DB stays usable.
func TestCallerPanicGoesOn(t *testing.T) {
	db := mustOpen(t, newDB(t), store.Options{})
	func() {
		defer func() {
			if r := recover(); r != "mine" {
				t.Errorf("recovered %v; want the caller's panic", r)
			}
		}()
		db.Update(func(tx *store.Tx) error {
			tx.PutDevice(sampleDevice("a"))
			panic("mine")
		})
	}()
	func() {
		defer func() {
			if r := recover(); r != "in events" {
				t.Errorf("recovered %v; want the callback's panic", r)
			}
		}()
		update(t, db, func(tx *store.Tx) error { _, err := tx.AppendEvents(evs(1)); return err })
		db.View(func(tx *store.Tx) error {
			return tx.Events(0, func(rmapchain.Event) error { panic("in events") })
		})
	}()
	if err := db.Broken(); err != nil {
		t.Fatalf("the caller's panic broke the DB: %v", err)
	}
	view(t, db, func(tx *store.Tx) error {
		if _, err := tx.Device("a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the panicking Update was committed: %v", err)
		}
		return nil
	})
}
