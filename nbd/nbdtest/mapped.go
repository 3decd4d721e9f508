package nbdtest

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/daxstack/daxstack/nbd"
	"golang.org/x/sys/unix"
)

// Mapped is a device on a regular file mapped into memory (MAP_SHARED):
// reads and writes are copies to and from the mapping, flush and FUA are
// msync, the way daxstack's engine reaches a file leaf. Trim, zeroes and
// block status go to the file as for File. Its size is fixed at open.
type Mapped struct {
	File
	m []byte
}

// MapFile opens and maps path read-write.
func MapFile(path string) (*Mapped, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Mapped{File: File{f: f}, m: m}, nil
}

// Close unmaps and closes the file.
func (d *Mapped) Close() error {
	unix.Munmap(d.m)
	return d.File.Close()
}

func (d *Mapped) Size() int64 { return int64(len(d.m)) }

func (d *Mapped) Handle(gone <-chan struct{}) nbd.Backend {
	return &mappedHandle{fileHandle: fileHandle{d: &d.File, gone: gone}, m: d}
}

type mappedHandle struct {
	fileHandle
	m *Mapped
}

func (h *mappedHandle) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if err := h.alive(); err != nil {
		return 0, err
	}
	if off < 0 || off > int64(len(h.m.m))-int64(len(p)) {
		return 0, fmt.Errorf("nbdtest: [%d, +%d) outside the device: %w", off, len(p), syscall.EINVAL)
	}
	n := len(p)
	bad, isBad := h.d.Bad.First(off, int64(len(p)))
	if isBad {
		n = int(bad - off)
	}
	copy(p[:n], h.m.m[off:])
	if isBad {
		return n, fmt.Errorf("nbdtest: media error at byte %d: %w", bad, syscall.EIO)
	}
	return n, nil
}

func (h *mappedHandle) WriteAt(_ context.Context, p []byte, off int64, fua bool) (int, error) {
	if err := h.alive(); err != nil {
		return 0, err
	}
	if off < 0 || off > int64(len(h.m.m))-int64(len(p)) {
		return 0, fmt.Errorf("nbdtest: [%d, +%d) outside the device: %w", off, len(p), syscall.EINVAL)
	}
	copy(h.m.m[off:], p)
	h.d.Bad.Clear(off, int64(len(p)))
	if fua {
		return len(p), h.sync(off, int64(len(p)))
	}
	return len(p), nil
}

// sync msyncs the pages of [off, off+length).
func (h *mappedHandle) sync(off, length int64) error {
	page := int64(os.Getpagesize())
	start := off / page * page
	return unix.Msync(h.m.m[start:off+length], unix.MS_SYNC)
}

func (h *mappedHandle) Flush(context.Context) error {
	if err := h.alive(); err != nil {
		return err
	}
	return unix.Msync(h.m.m, unix.MS_SYNC)
}
