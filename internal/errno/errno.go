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
// chain, else a syscall.Errno in it; ok is false when it has neither.
func Of(err error) (e syscall.Errno, ok bool) {
	var s *Sentinel
	if errors.As(err, &s) {
		return s.Errno, true
	}
	if errors.As(err, &e) {
		return e, true
	}
	return 0, false
}
