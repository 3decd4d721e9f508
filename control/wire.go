package control

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// WireError is an error as it crosses the daemon's socket: enough to print
// it exactly as the engine would have locally and to match it with
// errors.Is against the same sentinels.
type WireError struct {
	Message string `json:"message"`
	Errno   int    `json:"errno,omitempty"`
	Op      string `json:"op,omitempty"`
	Device  string `json:"device,omitempty"`
	UUID    string `json:"uuid,omitempty"`
	Devno   string `json:"devno,omitempty"`
	// Table is set when a table was refused.
	Table *stack.TableError `json:"table,omitempty"`
	// IO is set when a request failed at a sector (stack.IOError).
	IO *WireIOError `json:"io,omitempty"`
	// Kind names a sentinel the error matched: "locked", "schema",
	// "usage", "readonly", "removeall", "eof", "canceled", "deadline".
	Kind  string `json:"kind,omitempty"`
	Count int    `json:"count,omitempty"` // remove_all: devices left
}

// WireIOError is a stack.IOError on the wire; Message and Errno are its
// cause's.
type WireIOError struct {
	Op      string `json:"op"`
	Device  string `json:"device"`
	Sector  uint64 `json:"sector"`
	Message string `json:"message"`
	Errno   int    `json:"errno,omitempty"`
}

// EncodeError describes err for the wire (nil for nil).
func EncodeError(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Message: err.Error(), Errno: int(errnoOf(err))}
	var oe *OpError
	if errors.As(err, &oe) {
		w.Op, w.Device, w.UUID, w.Devno = oe.Op, oe.Device, oe.UUID, oe.Devno
		w.Message = oe.Err.Error()
	}
	var te *stack.TableError
	if errors.As(err, &te) {
		c := *te
		c.Err = nil
		w.Table = &c
	}
	var ioe *stack.IOError
	if errors.As(err, &ioe) {
		w.IO = &WireIOError{Op: ioe.Op, Device: ioe.Device, Sector: ioe.Sector, Message: ioe.Err.Error(), Errno: int(errnoOf(ioe.Err))}
	}
	var ra *RemoveAllError
	switch {
	case err == io.EOF:
		w.Kind = "eof"
	case errors.Is(err, context.Canceled):
		w.Kind = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		w.Kind = "deadline"
	case errors.Is(err, store.ErrLocked):
		w.Kind = "locked"
	case errors.Is(err, store.ErrSchemaTooNew):
		w.Kind = "schema"
	case errors.Is(err, ErrUsage):
		w.Kind = "usage"
	case errors.Is(err, ErrReadOnly):
		w.Kind = "readonly"
	case errors.As(err, &ra):
		w.Kind, w.Count = "removeall", ra.Count
	}
	return w
}

// Err rebuilds an error equivalent to the one encoded.
func (w *WireError) Err() error {
	if w == nil {
		return nil
	}
	if w.Kind == "eof" {
		return io.EOF
	}
	var cause error = &remoteError{msg: w.Message, errno: syscall.Errno(w.Errno), kind: w.Kind}
	if w.IO != nil {
		cause = &stack.IOError{Op: w.IO.Op, Device: w.IO.Device, Sector: w.IO.Sector,
			Err: &remoteError{msg: w.IO.Message, errno: syscall.Errno(w.IO.Errno), kind: w.Kind}}
	}
	if w.Table != nil {
		te := *w.Table
		te.Err = cause
		cause = &te
	}
	if w.Kind == "removeall" {
		cause = &RemoveAllError{Count: w.Count, Errs: []error{cause}}
	}
	if w.Op != "" || w.Device != "" {
		return &OpError{Op: w.Op, Device: w.Device, UUID: w.UUID, Devno: w.Devno, Err: cause}
	}
	return cause
}

// remoteError is the cause of an error that came over the socket.
type remoteError struct {
	msg   string
	errno syscall.Errno
	kind  string
}

func (e *remoteError) Error() string { return e.msg }

// Is matches the errno and the sentinels the error matched on the other
// side.
func (e *remoteError) Is(target error) bool {
	switch target {
	case store.ErrLocked:
		return e.kind == "locked"
	case store.ErrSchemaTooNew:
		return e.kind == "schema"
	case ErrUsage:
		return e.kind == "usage"
	case ErrReadOnly:
		return e.kind == "readonly"
	case context.Canceled:
		return e.kind == "canceled"
	case context.DeadlineExceeded:
		return e.kind == "deadline"
	case stack.ErrRemoved:
		return e.errno == syscall.ENXIO
	case stack.ErrNotFound:
		return e.errno == syscall.ENXIO
	case stack.ErrBusy, stack.ErrExists:
		return e.errno == syscall.EBUSY
	case stack.ErrInvalid:
		return e.errno == syscall.EINVAL
	}
	if errno, ok := target.(syscall.Errno); ok {
		return errno == e.errno && errno != 0
	}
	return false
}

// Errno returns the errno.
func (e *remoteError) Unwrap() error {
	if e.errno != 0 {
		return e.errno
	}
	return nil
}
