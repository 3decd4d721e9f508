package nbdtest

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/daxstack/daxstack/nbd"
)

// Device is storage that hands each connection a handle of its own.
type Device interface {
	// Size is the device's size in bytes now.
	Size() int64
	// Handle returns a new handle; it fails with nbd.ErrExportGone once
	// gone is closed.
	Handle(gone <-chan struct{}) nbd.Backend
	// Features are what the device's handles support.
	Features() nbd.Features
}

// Mem is a device in memory. Its base:allocation shows 4 KiB pages of
// zeroes as holes.
type Mem struct {
	mu   sync.RWMutex
	data []byte
	Bad  BadRanges
}

// NewMem returns a Mem of size bytes, all zero.
func NewMem(size int64) *Mem { return &Mem{data: make([]byte, size)} }

// Bytes returns a copy of the contents.
func (m *Mem) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}

// Resize changes the size (new bytes are zero).
func (m *Mem) Resize(size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size <= int64(len(m.data)) {
		m.data = m.data[:size]
		return
	}
	m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
}

func (m *Mem) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.data))
}

func (m *Mem) Features() nbd.Features {
	return nbd.CanFlush | nbd.CanFUA | nbd.CanTrim | nbd.CanWriteZeroes | nbd.CanFastZero | nbd.CanMultiConn
}

func (m *Mem) Handle(gone <-chan struct{}) nbd.Backend { return &memHandle{m: m, gone: gone} }

type memHandle struct {
	m    *Mem
	gone <-chan struct{}
}

func (h *memHandle) check(off, length int64) error {
	select {
	case <-h.gone:
		return nbd.ErrExportGone
	default:
	}
	if off < 0 || length < 0 || off+length > int64(len(h.m.data)) {
		return fmt.Errorf("nbdtest: [%d, +%d) outside the device: %w", off, length, syscall.EINVAL)
	}
	return nil
}

func (h *memHandle) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	h.m.mu.RLock()
	defer h.m.mu.RUnlock()
	if err := h.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	n := len(p)
	bad, isBad := h.m.Bad.First(off, int64(len(p)))
	if isBad {
		n = int(bad - off)
	}
	copy(p[:n], h.m.data[off:])
	if isBad {
		return n, fmt.Errorf("nbdtest: media error at byte %d: %w", bad, syscall.EIO)
	}
	return n, nil
}

func (h *memHandle) WriteAt(_ context.Context, p []byte, off int64, _ bool) (int, error) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if err := h.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	copy(h.m.data[off:], p)
	h.m.Bad.Clear(off, int64(len(p)))
	return len(p), nil
}

func (h *memHandle) WriteZeroes(_ context.Context, off, length int64, _ nbd.ZeroFlags) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if err := h.check(off, length); err != nil {
		return err
	}
	clear(h.m.data[off : off+length])
	h.m.Bad.Clear(off, length)
	return nil
}

func (h *memHandle) Trim(_ context.Context, off, length int64, _ bool) error {
	h.m.mu.RLock()
	defer h.m.mu.RUnlock()
	return h.check(off, length)
}

func (h *memHandle) Flush(context.Context) error { return h.check(0, 0) }

func (h *memHandle) BlockStatus(_ context.Context, name string, off, length int64, ext []nbd.Extent) ([]nbd.Extent, error) {
	h.m.mu.RLock()
	defer h.m.mu.RUnlock()
	if err := h.check(off, length); err != nil {
		return ext, err
	}
	switch name {
	case BadContext:
		return h.m.Bad.Extents(off, length, ext), nil
	case nbd.BaseAllocation:
		const page = 4096
		for p := off / page * page; p < off+length; p += page {
			end := min(p+page, int64(len(h.m.data)))
			zero := true
			for _, c := range h.m.data[p:end] {
				if c != 0 {
					zero = false
					break
				}
			}
			if !zero {
				continue
			}
			if n := len(ext); n > 0 && ext[n-1].Offset+ext[n-1].Length == p {
				ext[n-1].Length += end - p
			} else {
				ext = append(ext, nbd.Extent{Offset: p, Length: end - p, Flags: nbd.StateHole | nbd.StateZero})
			}
		}
	}
	return ext, nil
}

func (h *memHandle) Close() error { return nil }
