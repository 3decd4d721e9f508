package stack

import (
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
)

// These are the errors the pool returns. Each matches, with errors.Is, both
// itself and the errno the kernel would have returned for the same refusal,
// so callers can test errors.Is(err, ErrBusy) or errors.Is(err, syscall.EBUSY).
var (
	// ErrNotFound: no mapped device (or leaf) by that name or number.
	ErrNotFound = errno.New("device does not exist", syscall.ENXIO)
	// ErrExists: a mapped device with that name or UUID exists already.
	ErrExists = errno.New("device already exists", syscall.EBUSY)
	// ErrBusy: the device is used by a table or claimed by a holder.
	ErrBusy = errno.New("device or resource busy", syscall.EBUSY)
	// ErrInvalid: a name, table or argument the kernel would refuse with EINVAL.
	ErrInvalid = errno.New("invalid argument", syscall.EINVAL)
	// ErrRemoved: I/O to (or an Open of) a device that was removed.
	ErrRemoved = errno.New("device was removed", syscall.ENXIO)
	// ErrKill is what a target's Map returns for I/O that must fail (the
	// error target); the I/O path turns it into an *IOError.
	ErrKill = errno.New("I/O to an error target", syscall.EIO)
)

// Errno returns the kernel errno that corresponds to err (EINVAL when err
// carries none).
func Errno(err error) syscall.Errno {
	if e, ok := errno.Of(err); ok {
		return e
	}
	return syscall.EINVAL
}

// errnoName returns the kernel's %pe rendering of an errno, e.g. "-EINVAL".
func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EINVAL:
		return "-EINVAL"
	case syscall.EBUSY:
		return "-EBUSY"
	case syscall.ENXIO:
		return "-ENXIO"
	case syscall.ENODEV:
		return "-ENODEV"
	case syscall.ENOENT:
		return "-ENOENT"
	case syscall.ENOTBLK:
		return "-ENOTBLK"
	case syscall.EACCES:
		return "-EACCES"
	case syscall.EIO:
		return "-EIO"
	case syscall.ELOOP:
		return "-ELOOP"
	case syscall.ENOMEM:
		return "-ENOMEM"
	}
	return fmt.Sprintf("-%d", int(e))
}

// TableError is a refused table: the text that dmsetup prints (format
// errors) or that the kernel logs (everything else), with what it is about.
//
// Error returns the message without the "device-mapper: table: " prefix the
// kernel puts on it, e.g.
//
//	bad1: striped: Target length not divisible by number of stripes (-EINVAL)
//	bad3: pmem1 too small for target: start=0, len=100000000, dev_size=262144
type TableError struct {
	Device string // the mapped device whose table was refused
	Line   int    // 1-based line of the table text; 0 when not tied to a line
	Type   string // target type of that line, when known
	Text   string // the message, as described above
	Err    error  // the cause; matches ErrInvalid, ErrBusy, ErrNotFound or an errno
}

func (e *TableError) Error() string { return e.Text }

// Unwrap returns the cause.
func (e *TableError) Unwrap() error { return e.Err }

// CtrError is what a target constructor returns: Msg is the kernel's
// ti->error text ("Invalid argument count", "Device lookup failed", ...);
// Err, when set, is why (a failed device lookup, say) and decides the errno.
type CtrError struct {
	Msg string
	Err error
}

// Errorf returns a constructor error with the kernel's message and an
// optional cause.
func Errorf(msg string, cause error) error { return &CtrError{Msg: msg, Err: cause} }

func (e *CtrError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the cause.
func (e *CtrError) Unwrap() error { return e.Err }

// IOError is a failed read or write through a mapped device: the device and
// sector at which it failed, and why (syscall.EIO for an error target; the
// leaf's own error, which names the leaf and its bad sectors, for poison).
type IOError struct {
	Op     string // the request: "read", "write", "write-zeroes", "discard", "flush"
	Device string // the device on which the failing sector lies
	Sector uint64 // that sector
	Err    error
}

func (e *IOError) Error() string {
	return fmt.Sprintf("%s %s sector %d: %v", e.Op, e.Device, e.Sector, e.Err)
}

// Unwrap returns the cause.
func (e *IOError) Unwrap() error { return e.Err }
