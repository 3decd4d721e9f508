package control

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/daxstack/daxstack/stack"
)

// OpError is a failed command: the device-mapper operation it corresponds
// to (Op: "create", "reload", "remove", "resume", ... as dmsetup names its
// ioctls, or "" when the refusal happens before any), the device, and why.
type OpError struct {
	Op     string
	Device string
	UUID   string
	Devno  string // "0:N" when the device exists
	Err    error
}

func (e *OpError) Error() string {
	if e.Op == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s %s: %v", e.Op, e.Device, e.Err)
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Errno returns the errno the kernel would have returned.
func (e *OpError) Errno() syscall.Errno { return errnoOf(e.Err) }

// Sentinel errors of the engine, in addition to those of stack and store.
var (
	// ErrUsage: the command's arguments are wrong (no such method,
	// missing parameter).
	ErrUsage = errors.New("usage error")
	// ErrReadOnly: the engine was opened read-only.
	ErrReadOnly = errors.New("engine is read-only")
	// ErrInternal: a command hit a bug (a panic); nothing it did was
	// committed.
	ErrInternal = errors.New("internal error")
)

// errnoOf returns the errno an error corresponds to.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, ErrUsage):
		return syscall.EINVAL
	}
	return stack.Errno(err)
}

// Strerror renders an errno as C's strerror does ("Invalid argument").
func Strerror(e syscall.Errno) string {
	s := e.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func opErr(op, dev string, d *stack.Device, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	e := &OpError{Op: op, Device: dev, Err: err}
	if d != nil {
		e.UUID = d.UUID()
		e.Devno = fmt.Sprintf("%d:%d", stack.MappedMajor, d.Minor())
	}
	return e
}
