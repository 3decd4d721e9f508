package nbdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/daxstack/daxstack/nbd"
	"golang.org/x/sys/unix"
)

// File is a device on a regular file: pread and pwrite, fdatasync for
// flush and FUA, fallocate for trim and zeroes, SEEK_DATA and SEEK_HOLE
// for base:allocation; the way nbdkit's file plugin serves a file.
type File struct {
	f   *os.File
	ro  bool
	Bad BadRanges
}

// OpenFile opens path as a device (read-only if ro).
func OpenFile(path string, ro bool) (*File, error) {
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	return &File{f: f, ro: ro}, nil
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }

func (d *File) Size() int64 {
	fi, err := d.f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (d *File) Features() nbd.Features {
	return nbd.CanFlush | nbd.CanFUA | nbd.CanTrim | nbd.CanWriteZeroes | nbd.CanFastZero | nbd.CanMultiConn
}

func (d *File) Handle(gone <-chan struct{}) nbd.Backend { return &fileHandle{d: d, gone: gone} }

type fileHandle struct {
	d    *File
	gone <-chan struct{}
}

func (h *fileHandle) alive() error {
	select {
	case <-h.gone:
		return nbd.ErrExportGone
	default:
		return nil
	}
}

func (h *fileHandle) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if err := h.alive(); err != nil {
		return 0, err
	}
	want := len(p)
	bad, isBad := h.d.Bad.First(off, int64(len(p)))
	if isBad {
		want = int(bad - off)
	}
	n, err := h.d.f.ReadAt(p[:want], off)
	if err != nil {
		return n, err
	}
	if isBad {
		return n, fmt.Errorf("nbdtest: media error at byte %d: %w", bad, syscall.EIO)
	}
	return n, nil
}

func (h *fileHandle) WriteAt(_ context.Context, p []byte, off int64, fua bool) (int, error) {
	if err := h.alive(); err != nil {
		return 0, err
	}
	n, err := h.d.f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	h.d.Bad.Clear(off, int64(n))
	if fua {
		return n, unix.Fdatasync(int(h.d.f.Fd()))
	}
	return n, nil
}

func (h *fileHandle) WriteZeroes(_ context.Context, off, length int64, flags nbd.ZeroFlags) error {
	if err := h.alive(); err != nil {
		return err
	}
	mode := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
	if flags&nbd.ZeroNoHole != 0 {
		mode = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
	}
	if err := unix.Fallocate(int(h.d.f.Fd()), mode, off, length); err != nil {
		if flags&nbd.ZeroFast != 0 || !errors.Is(err, syscall.EOPNOTSUPP) {
			return err
		}
		if _, err := h.d.f.WriteAt(make([]byte, length), off); err != nil {
			return err
		}
	}
	h.d.Bad.Clear(off, length)
	if flags&nbd.ZeroFUA != 0 {
		return unix.Fdatasync(int(h.d.f.Fd()))
	}
	return nil
}

func (h *fileHandle) Trim(_ context.Context, off, length int64, fua bool) error {
	if err := h.alive(); err != nil {
		return err
	}
	// A hint: the bytes go, but the bad ranges stay (trim does not
	// repair a medium).
	if err := unix.Fallocate(int(h.d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
		return err
	}
	if fua {
		return unix.Fdatasync(int(h.d.f.Fd()))
	}
	return nil
}

func (h *fileHandle) Flush(context.Context) error {
	if err := h.alive(); err != nil {
		return err
	}
	return unix.Fdatasync(int(h.d.f.Fd()))
}

func (h *fileHandle) BlockStatus(_ context.Context, name string, off, length int64, ext []nbd.Extent) ([]nbd.Extent, error) {
	if err := h.alive(); err != nil {
		return ext, err
	}
	switch name {
	case BadContext:
		return h.d.Bad.Extents(off, length, ext), nil
	case nbd.BaseAllocation:
		fd := int(h.d.f.Fd())
		end := off + length
		for pos := off; pos < end; {
			data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
			if errors.Is(err, syscall.ENXIO) {
				data = end // a hole up to the end of the file
			} else if err != nil {
				return ext[:0], nil // cannot tell: all data
			}
			if data > pos {
				ext = append(ext, nbd.Extent{Offset: pos, Length: min(data, end) - pos, Flags: nbd.StateHole | nbd.StateZero})
			}
			if data >= end {
				break
			}
			hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
			if err != nil {
				return ext, nil
			}
			pos = hole
		}
	}
	return ext, nil
}

func (h *fileHandle) Close() error { return nil }
