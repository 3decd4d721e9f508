// Package errno makes sentinel errors that also match a kernel errno.
//
// It exists because several packages (stack, dax) each declare refusals
// that callers test two ways: errors.Is(err, stack.ErrBusy) for the
// meaning, errors.Is(err, syscall.EBUSY) for what the kernel would have
// returned (the CLI's exit messages and the daemon's wire errors carry the
// errno). One type serves them all.
package errno

import (
	"errors"
	"syscall"
)

// Sentinel is an error value that is its own identity and, through
// errors.Is, also matches Errno.
type Sentinel struct {
	Msg   string
	Errno syscall.Errno
}

// New returns a sentinel with message msg that matches e.
func New(msg string, e syscall.Errno) error { return &Sentinel{Msg: msg, Errno: e} }

func (e *Sentinel) Error() string { return e.Msg }

// Is reports whether target is the sentinel's errno (identity with the
// sentinel itself is errors.Is's own test).
func (e *Sentinel) Is(target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && errno == e.Errno
}

// Of returns the errno err carries: that of the first Sentinel in its
// chain, else a syscall.Errno in it, else the first of the usual errnos
// it matches with errors.Is (an error type whose Is method says it is
// EIO, say); ok is false when it has none of them.
func Of(err error) (e syscall.Errno, ok bool) {
	var s *Sentinel
	if errors.As(err, &s) {
		return s.Errno, true
	}
	if errors.As(err, &e) {
		return e, true
	}
	if err == nil {
		return 0, false
	}
	for _, e := range matched {
		if errors.Is(err, e) {
			return e, true
		}
	}
	return 0, false
}

// matched are the errnos Of asks an error about when it carries none.
var matched = []syscall.Errno{
	syscall.EIO, syscall.ENOSPC, syscall.EROFS, syscall.ENXIO, syscall.EBUSY, syscall.EAGAIN,
	syscall.EINVAL, syscall.ENOENT, syscall.EACCES, syscall.EPERM, syscall.ENODEV, syscall.EBADF,
	syscall.EOPNOTSUPP, syscall.ENOMEM, syscall.ELOOP,
}
