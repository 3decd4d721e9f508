package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"

	"github.com/daxstack/daxstack/stack"
)

// Open opens a device, mapped or a leaf a table (or a holder) uses, for
// I/O as a user: the device counts it in info's Open and remove refuses
// it as busy until the handle is closed. Opening a read-only device for
// writing fails with EROFS.
func (e *Engine) Open(ctx context.Context, r OpenReq) (Handle, error) {
	return e.open(ctx, r.Name, r.Write, false)
}

// OpenInternal opens a device for daxstack's own plumbing (an export
// serving it): the handle is not a user, never counts in Open and never
// makes the device busy. When the device is removed (see Hooks) its I/O
// fails with stack.ErrRemoved.
func (e *Engine) OpenInternal(ctx context.Context, name string, write bool) (Handle, error) {
	return e.open(ctx, name, write, true)
}

func (e *Engine) open(ctx context.Context, name string, write, internal bool) (Handle, error) {
	h := &handle{e: e, name: name, write: write, internal: internal}
	err := e.lockedFor(ctx, func() error {
		if write && e.cfg.ReadOnly {
			return ErrReadOnly
		}
		d, dev, err := e.target(name)
		if err != nil {
			return opErr("", name, nil, err)
		}
		if d == nil {
			if err := e.peerUse(dev, write); err != nil {
				return opErr("", name, nil, err)
			}
			l, err := e.pool.AcquireLeaf(dev.Leaf().Ref())
			if err != nil {
				return opErr("", name, nil, err)
			}
			h.leaf = l
			return nil
		}
		if write && d.ReadOnly() {
			return opErr("", name, d, fmt.Errorf("%w: %s is read-only", syscall.EROFS, d.Name()))
		}
		if !internal {
			if err := d.Open(); err != nil {
				return opErr("", name, d, err)
			}
		}
		h.d = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// handle is an open device (see Handle).
type handle struct {
	e        *Engine
	name     string
	d        *stack.Device // a mapped device, or
	leaf     *stack.Dev    // a leaf
	write    bool
	internal bool
	closed   atomic.Bool
}

func (h *handle) ReadAt(p []byte, off int64) (int, error) {
	return h.ReadAtContext(context.Background(), p, off)
}

func (h *handle) WriteAt(p []byte, off int64) (int, error) {
	return h.WriteAtContext(context.Background(), p, off)
}

func (h *handle) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := h.usable(false); err != nil {
		return 0, err
	}
	if h.leaf != nil {
		return h.leaf.Leaf().ReadAt(p, off)
	}
	n, err := h.d.Do(ctx, stack.Request{Op: stack.OpRead, Off: off, Data: p})
	return int(n), h.ioErr(err)
}

func (h *handle) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := h.usable(true); err != nil {
		return 0, err
	}
	var n int64
	var err error
	if h.leaf != nil {
		var m int
		m, err = h.leaf.Leaf().WriteAt(p, off)
		n = int64(m)
	} else {
		n, err = h.d.Do(ctx, stack.Request{Op: stack.OpWrite, Off: off, Data: p})
	}
	return int(n), errors.Join(h.ioErr(err), h.e.commitPending())
}

func (h *handle) WriteZeroes(ctx context.Context, off, n int64) error {
	if err := h.usable(true); err != nil {
		return err
	}
	var err error
	if h.leaf != nil {
		err = zeroLeaf(h.leaf.Leaf(), off, n)
	} else {
		_, err = h.d.Do(ctx, stack.Request{Op: stack.OpWriteZeroes, Off: off, Len: n})
	}
	return errors.Join(h.ioErr(err), h.e.commitPending())
}

func (h *handle) Discard(ctx context.Context, off, n int64) error {
	if err := h.usable(true); err != nil {
		return err
	}
	if h.leaf != nil {
		return nil // a hint: the leaves daxstack opens do not discard
	}
	_, err := h.d.Do(ctx, stack.Request{Op: stack.OpDiscard, Off: off, Len: n})
	return errors.Join(h.ioErr(err), h.e.commitPending())
}

func (h *handle) Flush(ctx context.Context) error {
	if err := h.usable(false); err != nil {
		return err
	}
	if h.leaf != nil {
		if s, ok := h.leaf.Leaf().(stack.LeafSyncer); ok {
			return s.Sync()
		}
		return nil
	}
	return h.ioErr(h.d.Flush(ctx))
}

func (h *handle) Size() int64 {
	if h.leaf != nil {
		return int64(h.leaf.Size()) * stack.SectorSize
	}
	return int64(h.d.Size()) * stack.SectorSize
}

func (h *handle) ReadOnly() bool { return !h.write || (h.d != nil && h.d.ReadOnly()) }

// Close ends the handle. The last user handle of a device marked for a
// deferred removal lets it go.
func (h *handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	if h.leaf != nil {
		h.e.pool.ReleaseLeaf(h.leaf)
		return nil
	}
	if !h.internal && h.d.Close() == 0 {
		h.e.deferredDue(context.Background())
	}
	return nil
}

// usable refuses I/O through a closed handle, and writes through one
// opened for reading (EBADF, as a file descriptor opened O_RDONLY).
func (h *handle) usable(write bool) error {
	if h.closed.Load() {
		return fmt.Errorf("%w: %s: handle is closed", syscall.EBADF, h.name)
	}
	if write && !h.write {
		return fmt.Errorf("%w: %s is open for reading only", syscall.EBADF, h.name)
	}
	if write && h.d != nil && h.d.ReadOnly() {
		return &stack.IOError{Op: "write", Device: h.d.Name(), Err: syscall.EROFS}
	}
	return nil
}

// ioErr gives the error of a request in the engine's words: a device
// suspended in a process that cannot wait for its resume says so.
func (h *handle) ioErr(err error) error {
	var se *stack.SuspendedError
	if errors.As(err, &se) {
		return opErr("", h.name, nil, fmt.Errorf("%w: %s is suspended; I/O would wait for `daxstack resume %s`", syscall.EAGAIN, se.Device, se.Device))
	}
	return err
}

// commitPending commits the changes of recorded state that I/O left
// (poison a write cleared, a target's state), if there are any: a write
// that changed nothing recorded makes no commit.
func (e *Engine) commitPending() error {
	if !e.pending() {
		return nil
	}
	return e.locked(func() error {
		if !e.pending() {
			return nil // another request's commit took them
		}
		return e.mutate(func() error { return nil })
	})
}

// zeroLeaf writes n zero bytes at off of a leaf.
func zeroLeaf(l stack.Leaf, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := l.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

var _ io.ReaderAt = (*handle)(nil)
