// Package testdev is a device for the exports' tests: a sparse file with
// the knobs a mapped device has, bad sectors that fail reads (sector-exact,
// with the good prefix returned, as the engine's handles do), writes that
// clear the bad sectors they cover whole, a suspend that makes I/O wait
// until resume or until the request's context ends, resize and read-only,
// and counters of what reached it.
package testdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// SectorSize is the unit of bad ranges.
const SectorSize = 512

// MediaError is a read or write that met a bad sector; it matches
// syscall.EIO.
type MediaError struct {
	Op     string
	Sector int64
}

func (e *MediaError) Error() string {
	return fmt.Sprintf("testdev: %s: media error at sector %d", e.Op, e.Sector)
}

// Is makes a MediaError match syscall.EIO.
func (e *MediaError) Is(target error) bool { return target == syscall.EIO }

// Counts is what reached the device.
type Counts struct {
	Reads, Writes, FUAWrites, Zeroes, Discards, Flushes int64
	Lends                                               int64 // reads by LendAt
	ZeroBytes, DiscardBytes                             int64
}

// Dev is a file-backed device. It implements devfs.Device (and
// devfs.FUAWriter).
type Dev struct {
	f        *os.File
	mem      []byte // the file's mapping (NewMapped), or nil; set once
	unmapped atomic.Bool

	mu      sync.Mutex
	bad     map[int64]bool // bad sectors
	resumed chan struct{}  // nil when not suspended; closed at resume
	size    int64
	ro      atomic.Bool

	// Lock-free fast paths: whether any sector is bad, and the channel
	// of a suspend.
	nbad    atomic.Int64
	suspend atomic.Pointer[chan struct{}]

	reads, writes, fua, zeroes, discards, flushes atomic.Int64
	lends                                         atomic.Int64
	zeroBytes, discardBytes                       atomic.Int64
	lastZero, lastDiscard                         atomic.Pointer[[2]int64]
}

// New creates a sparse file of size bytes at path and returns a device on
// it. Close closes the file.
func New(path string, size int64) (*Dev, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return &Dev{f: f, bad: map[int64]bool{}, size: size}, nil
}

// NewMapped is New, with reads and writes copying from and to a shared
// mapping of the file, as the engine's file leaves do (no system call per
// I/O). Resize is refused.
func NewMapped(path string, size int64) (*Dev, error) {
	d, err := New(path, size)
	if err != nil {
		return nil, err
	}
	m, err := unix.Mmap(int(d.f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		d.f.Close()
		return nil, err
	}
	d.mem = m
	return d, nil
}

// File is the backing file (for tests that look at the bytes).
func (d *Dev) File() *os.File { return d.f }

// Close closes the backing file (and unmaps it).
func (d *Dev) Close() error {
	if d.mem != nil && !d.unmapped.Swap(true) {
		unix.Munmap(d.mem) // d.mem stays: no I/O may come after Close
	}
	return d.f.Close()
}

// SetBad marks count sectors from sector bad; SetGood clears them.
func (d *Dev) SetBad(sector, count int64) { d.setBad(sector, count, true) }

// SetGood clears count bad sectors from sector.
func (d *Dev) SetGood(sector, count int64) { d.setBad(sector, count, false) }

func (d *Dev) setBad(sector, count int64, bad bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for s := sector; s < sector+count; s++ {
		if bad {
			d.bad[s] = true
		} else {
			delete(d.bad, s)
		}
	}
	d.nbad.Store(int64(len(d.bad)))
}

// Bad returns the bad sectors, sorted.
func (d *Dev) Bad() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]int64, 0, len(d.bad))
	for s := range d.bad {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Suspend makes every I/O wait until Resume (or until its context ends).
func (d *Dev) Suspend() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.resumed == nil {
		d.resumed = make(chan struct{})
		d.suspend.Store(&d.resumed)
	}
}

// Resume releases the I/O that Suspend holds.
func (d *Dev) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.resumed != nil {
		close(d.resumed)
		d.resumed = nil
		d.suspend.Store(nil)
	}
}

// SetReadOnly makes writes fail with EROFS.
func (d *Dev) SetReadOnly(ro bool) {
	d.ro.Store(ro)
}

// Resize changes the size of the backing file.
func (d *Dev) Resize(size int64) error {
	if d.mem != nil {
		return fmt.Errorf("testdev: a mapped device can't be resized: %w", syscall.EINVAL)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.size = size
	return d.f.Truncate(size)
}

// Counts returns the counters.
func (d *Dev) Counts() Counts {
	return Counts{
		Reads: d.reads.Load(), Lends: d.lends.Load(), Writes: d.writes.Load(), FUAWrites: d.fua.Load(),
		Zeroes: d.zeroes.Load(), Discards: d.discards.Load(), Flushes: d.flushes.Load(),
		ZeroBytes: d.zeroBytes.Load(), DiscardBytes: d.discardBytes.Load(),
	}
}

// LastZero and LastDiscard return the offset and length of the last
// WriteZeroes and Discard (zero if none).
func (d *Dev) LastZero() (off, n int64) { return last(&d.lastZero) }

// LastDiscard: see LastZero.
func (d *Dev) LastDiscard() (off, n int64) { return last(&d.lastDiscard) }

func last(p *atomic.Pointer[[2]int64]) (int64, int64) {
	if v := p.Load(); v != nil {
		return v[0], v[1]
	}
	return 0, 0
}

// enter waits while the device is suspended.
func (d *Dev) enter(ctx context.Context) error {
	if d.suspend.Load() == nil {
		return nil
	}
	for {
		d.mu.Lock()
		ch := d.resumed
		d.mu.Unlock()
		if ch == nil {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// firstBad returns the first bad sector in [off, off+n), or -1.
func (d *Dev) firstBad(off, n int64) int64 {
	if d.nbad.Load() == 0 {
		return -1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.bad) == 0 {
		return -1
	}
	for s := off / SectorSize; s*SectorSize < off+n; s++ {
		if d.bad[s] {
			return s
		}
	}
	return -1
}

// clear removes the bad sectors [off, off+n) covers whole; it returns the
// first bad sector the range covers only in part, or -1.
func (d *Dev) clear(off, n int64) int64 {
	if d.nbad.Load() == 0 {
		return -1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.bad) == 0 {
		return -1
	}
	for s := off / SectorSize; s*SectorSize < off+n; s++ {
		if !d.bad[s] {
			continue
		}
		if s*SectorSize < off || (s+1)*SectorSize > off+n {
			return s
		}
		delete(d.bad, s)
	}
	d.nbad.Store(int64(len(d.bad)))
	return -1
}

// ReadAt reads at off; at a bad sector it returns the bytes before it and
// a *MediaError.
func (d *Dev) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := d.enter(ctx); err != nil {
		return 0, err
	}
	d.reads.Add(1)
	if b := d.firstBad(off, int64(len(p))); b >= 0 {
		good := max(b*SectorSize-off, 0)
		n, err := d.readAt(p[:good], off)
		if err != nil {
			return n, err
		}
		return n, &MediaError{Op: "read", Sector: b}
	}
	return d.readAt(p, off)
}

// Lending is a Dev that also lends its bytes (devfs.ReadLender): in place
// for a mapped device (NewMapped), a copy for a file device.
type Lending struct{ *Dev }

// LendAt lends up to n bytes at off, with ReadAt's errors. It counts in
// Reads and Lends.
func (l Lending) LendAt(ctx context.Context, off int64, n int) ([][]byte, func(), error) {
	d := l.Dev
	if err := d.enter(ctx); err != nil {
		return nil, nil, err
	}
	d.reads.Add(1)
	d.lends.Add(1)
	var err error
	if b := d.firstBad(off, int64(n)); b >= 0 {
		n = int(max(b*SectorSize-off, 0))
		err = &MediaError{Op: "read", Sector: b}
	}
	if d.mem == nil {
		p := make([]byte, n)
		k, rerr := d.f.ReadAt(p, off)
		if rerr != nil && err == nil {
			err = rerr
		}
		return [][]byte{p[:k]}, nil, err
	}
	if off >= int64(len(d.mem)) {
		return nil, nil, io.EOF
	}
	end := min(off+int64(n), int64(len(d.mem)))
	return [][]byte{d.mem[off:end]}, nil, err
}

func (d *Dev) readAt(p []byte, off int64) (int, error) {
	if d.mem != nil {
		if off >= int64(len(d.mem)) {
			return 0, io.EOF
		}
		n := copy(p, d.mem[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return d.f.ReadAt(p, off)
}

func (d *Dev) writeAt(p []byte, off int64) (int, error) {
	if d.mem != nil {
		if off+int64(len(p)) > int64(len(d.mem)) {
			return 0, syscall.ENOSPC
		}
		return copy(d.mem[off:], p), nil
	}
	return d.f.WriteAt(p, off)
}

func (d *Dev) write(ctx context.Context, p []byte, off int64) (int, error) {
	if err := d.enter(ctx); err != nil {
		return 0, err
	}
	if d.ro.Load() {
		return 0, syscall.EROFS
	}
	d.writes.Add(1)
	if b := d.clear(off, int64(len(p))); b >= 0 {
		return 0, &MediaError{Op: "write", Sector: b}
	}
	return d.writeAt(p, off)
}

// WriteAt writes at off, clearing the bad sectors it covers whole.
func (d *Dev) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	return d.write(ctx, p, off)
}

// WriteAtFUA is WriteAt, then durable.
func (d *Dev) WriteAtFUA(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := d.write(ctx, p, off)
	if err != nil {
		return n, err
	}
	d.fua.Add(1)
	return n, d.f.Sync()
}

// WriteZeroes zeroes [off, off+n) (in the file: FALLOC_FL_ZERO_RANGE) and
// clears the bad sectors it covers whole.
func (d *Dev) WriteZeroes(ctx context.Context, off, n int64) error {
	if err := d.enter(ctx); err != nil {
		return err
	}
	if d.ro.Load() {
		return syscall.EROFS
	}
	d.zeroes.Add(1)
	d.zeroBytes.Add(n)
	d.lastZero.Store(&[2]int64{off, n})
	if b := d.clear(off, n); b >= 0 {
		return &MediaError{Op: "write zeroes", Sector: b}
	}
	if d.mem != nil {
		clear(d.mem[off : off+n])
		return nil
	}
	err := d.control(func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		return err
	}
	// tmpfs has no FALLOC_FL_ZERO_RANGE.
	zeros := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		k := min(n-done, int64(len(zeros)))
		if _, err := d.f.WriteAt(zeros[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// Discard counts the hint and changes nothing.
func (d *Dev) Discard(ctx context.Context, off, n int64) error {
	if err := d.enter(ctx); err != nil {
		return err
	}
	d.discards.Add(1)
	d.discardBytes.Add(n)
	d.lastDiscard.Store(&[2]int64{off, n})
	return nil
}

// Flush makes written data durable (fdatasync of the file).
func (d *Dev) Flush(ctx context.Context) error {
	if err := d.enter(ctx); err != nil {
		return err
	}
	d.flushes.Add(1)
	if d.mem != nil {
		return unix.Msync(d.mem, unix.MS_SYNC)
	}
	return d.control(unix.Fdatasync)
}

// control runs fn on the file's descriptor, holding it against Close.
func (d *Dev) control(fn func(fd int) error) error {
	raw, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
