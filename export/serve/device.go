package serve

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/extent"
)

// device is one exported mapped device: the engine's internal handle its
// device file and its NBD connections share, and what the NBD handshake
// tells a client.
type device struct {
	minor uint32
	name  atomic.Pointer[string]
	size  atomic.Int64 // bytes
	ro    atomic.Bool
	h     atomic.Pointer[handleBox]
	holes atomic.Pointer[extent.Set] // sectors of zero-target segments

	mu    sync.Mutex
	conns int           // NBD backends open (connections in transmission)
	gone  chan struct{} // closed when the export ends
}

// handleBox holds the handle in an atomic.Pointer (an interface value).
type handleBox struct{ control.Handle }

func newDevice(name string, minor uint32, size int64, ro bool, h control.Handle) *device {
	d := &device{minor: minor, gone: make(chan struct{})}
	d.name.Store(&name)
	d.size.Store(size)
	d.ro.Store(ro)
	d.h.Store(&handleBox{h})
	empty := extent.Set{}
	d.holes.Store(&empty)
	return d
}

func (d *device) Name() string           { return *d.name.Load() }
func (d *device) handle() control.Handle { return d.h.Load().Handle }

// setHandle puts a new handle behind the device (one opened for writing
// when the device became writable) and closes the old one.
func (d *device) setHandle(h control.Handle) {
	if old := d.h.Swap(&handleBox{h}); old != nil {
		old.Close()
	}
}

// end closes the export: NBD connections get ErrExportGone from now on.
func (d *device) end() {
	d.mu.Lock()
	select {
	case <-d.gone:
	default:
		close(d.gone)
	}
	d.mu.Unlock()
	d.handle().Close()
}

func (d *device) nbdConns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}

// file is the devfs.Device of a device: its I/O is the handle's.
type file struct{ d *device }

func (f file) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return f.d.handle().ReadAtContext(ctx, p, off)
}

func (f file) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	return f.d.handle().WriteAtContext(ctx, p, off)
}

func (f file) WriteZeroes(ctx context.Context, off, n int64) error {
	return f.d.handle().WriteZeroes(ctx, off, n)
}

func (f file) Discard(ctx context.Context, off, n int64) error {
	return f.d.handle().Discard(ctx, off, n)
}

func (f file) Flush(ctx context.Context) error { return f.d.handle().Flush(ctx) }

// zeroHoles returns the sectors of a table's zero segments: what
// base:allocation calls holes.
func zeroHoles(t control.TableResp) extent.Set {
	var ex []extent.Extent
	for _, s := range t.Segments {
		if s.Target == "zero" {
			ex = append(ex, extent.Extent{Start: s.Start, Len: s.Length})
		}
	}
	return extent.Of(ex...)
}
