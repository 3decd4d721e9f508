package devfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/daxstack/daxstack/export/internal/testdev"
)

// testGroup owns the files in tests (any gid will do; it needs no name).
const testGroup = 4242

// mount mounts an FS for t, unmounted when t ends.
func mount(t *testing.T, o Options) *FS {
	t.Helper()
	testdev.NeedFUSE(t)
	if o.Group == 0 {
		o.Group = testGroup
	}
	fs, err := Mount(filepath.Join(t.TempDir(), "dev"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return fs
}

// add adds a device file of a fresh test device.
func add(t *testing.T, fs *FS, name string, a Attr) *testdev.Dev {
	t.Helper()
	return addAs(t, fs, name, a, false)
}

// addAs is add, of a device that lends its bytes (ReadLender) if lending.
func addAs(t *testing.T, fs *FS, name string, a Attr, lending bool) *testdev.Dev {
	t.Helper()
	var d *testdev.Dev
	var err error
	if lending {
		d, err = testdev.NewMapped(filepath.Join(t.TempDir(), name+".img"), a.Size)
	} else {
		d, err = testdev.New(filepath.Join(t.TempDir(), name+".img"), a.Size)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var dev Device = d
	if lending {
		dev = testdev.Lending{Dev: d}
	}
	if err := fs.Add(name, dev, a); err != nil {
		t.Fatal(err)
	}
	return d
}

// readPaths runs f for a device read with ReadAt and for one that lends
// its bytes, and checks that the path meant was taken.
func readPaths(t *testing.T, f func(t *testing.T, lending bool) *testdev.Dev) {
	for _, lending := range []bool{false, true} {
		name := "ReadAt"
		if lending {
			name = "LendAt"
		}
		t.Run(name, func(t *testing.T) {
			d := f(t, lending)
			if c := d.Counts(); (c.Lends > 0) != lending || c.Reads == 0 {
				t.Errorf("counts %+v: lending %v", c, lending)
			}
		})
	}
}

// eventually polls cond for up to 5 s: a client's close reaches the
// server asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("still not %s after 5s", what)
		}
	}
}

func openFile(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
