package fsfiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// TestConcurrent: lookups from many goroutines, on one FS and through a
// Cache, while files are written; run with -race.
func TestConcurrent(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 16<<10)
	pl := f.placement("a")
	s := sectors(sectorOf(t, pl, 0), 1)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	c := NewCache(Options{})
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				var r Result
				var err error
				if g%2 == 0 {
					r, err = fs.Lookup(context.Background(), s, 10)
				} else {
					r, err = c.Lookup(context.Background(), f.major, f.minor, s, 10)
				}
				if err == nil && (len(r.Files) != 1 || r.Files[0].Inode != f.ino("a")) {
					err = fmt.Errorf("lookup %d: %+v", i, r)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			if err := os.WriteFile(f.path(fmt.Sprintf("w%d", i)), make([]byte, 4096), 0o644); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok, err := c.Mounted(f.major, f.minor); !ok || err != nil {
		t.Errorf("Cache.Mounted = %v %v", ok, err)
	}
	// The cached table follows an unmount.
	f.umount()
	if ok, err := c.Mounted(f.major, f.minor); ok || err != nil {
		t.Errorf("Cache.Mounted after umount = %v %v", ok, err)
	}
}

// TestCancel: a cancelled context ends the walk; the FS stays usable.
func TestCancel(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := sectors(sectorOf(t, f.placement("a"), 0), 1)
	if _, err := fs.Lookup(ctx, s, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lookup: %v", err)
	}
	r := doLookup(t, fs, s, 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("a"), Paths: []string{f.path("a")}, Length: 512})
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Lookup(context.Background(), s, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
