package fsfiles

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// Cache keeps one FS per block device, for a daemon that looks up the bad
// ranges of many devices: the first lookup of a device opens it (and
// builds its index); later ones reuse it; a device whose filesystem went
// away is dropped. A Cache is safe for concurrent use; lookups of
// different devices run in parallel.
type Cache struct {
	opts   Options
	mu     sync.Mutex
	fs     map[uint64]*FS
	closed bool
}

// NewCache returns an empty cache whose FS are opened with opts.
func NewCache(opts Options) *Cache { return &Cache{opts: opts, fs: map[uint64]*FS{}} }

// Get returns the FS of device major:minor, opening it if needed.
func (c *Cache) Get(major, minor uint32) (*FS, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	key := unix.Mkdev(major, minor)
	if fs := c.fs[key]; fs != nil {
		return fs, nil
	}
	fs, err := OpenWith(major, minor, c.opts)
	if err != nil {
		return nil, err
	}
	c.fs[key] = fs
	return fs, nil
}

// Lookup is Get then FS.Lookup; a device found unmounted is forgotten.
func (c *Cache) Lookup(ctx context.Context, major, minor uint32, sectors extent.Set, limit int) (Result, error) {
	fs, err := c.Get(major, minor)
	if err != nil {
		return Result{}, err
	}
	r, err := fs.Lookup(ctx, sectors, limit)
	if errors.Is(err, ErrNotMounted) || errors.Is(err, ErrClosed) {
		c.Forget(major, minor)
	}
	return r, err
}

// Mounted reports whether a filesystem is mounted on major:minor (it
// reads the cache's mountinfo; no FS is opened).
func (c *Cache) Mounted(major, minor uint32) (bool, error) {
	ms, err := readMountInfo(c.opts.withDefaults().MountInfo)
	if err != nil {
		return false, err
	}
	return len(MountsOf(ms, major, minor)) > 0, nil
}

// Forget closes and drops the FS of a device (when the device goes away).
func (c *Cache) Forget(major, minor uint32) {
	c.mu.Lock()
	key := unix.Mkdev(major, minor)
	fs := c.fs[key]
	delete(c.fs, key)
	c.mu.Unlock()
	if fs != nil {
		fs.Close()
	}
}

// Close closes every FS of the cache.
func (c *Cache) Close() error {
	c.mu.Lock()
	all := c.fs
	c.fs, c.closed = map[uint64]*FS{}, true
	c.mu.Unlock()
	for _, fs := range all {
		fs.Close()
	}
	return nil
}
