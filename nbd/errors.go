package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
)

// Errno is an error value of the transmission phase (NBD_E*), as a
// server sends it. Each matches the syscall.Errno of the same number
// through errors.Is, so errors.Is(err, syscall.EIO) finds a media error
// whether it came from a local leaf or over NBD.
type Errno uint32

// The error values of the spec.
const (
	EPERM     Errno = 1   // NBD_EPERM
	EIO       Errno = 5   // NBD_EIO
	ENOMEM    Errno = 12  // NBD_ENOMEM
	EINVAL    Errno = 22  // NBD_EINVAL
	ENOSPC    Errno = 28  // NBD_ENOSPC
	EOVERFLOW Errno = 75  // NBD_EOVERFLOW
	ENOTSUP   Errno = 95  // NBD_ENOTSUP
	ESHUTDOWN Errno = 108 // NBD_ESHUTDOWN
)

func (e Errno) Error() string {
	switch e {
	case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN:
		return syscall.Errno(e).Error()
	}
	return fmt.Sprintf("nbd error %d", uint32(e))
}

// Is reports whether target is the syscall.Errno of the same meaning.
func (e Errno) Is(target error) bool {
	t, ok := target.(syscall.Errno)
	if !ok {
		return false
	}
	return syscall.Errno(e) == t || (e == ENOTSUP && t == syscall.EOPNOTSUPP)
}

// Errors of this package. Each also matches an errno through errors.Is.
var (
	// ErrUnknownExport: no export of that name (NBD_REP_ERR_UNKNOWN). An
	// Exports directory returns it for a name it does not serve.
	ErrUnknownExport = errno.New("nbd: no such export", syscall.ENOENT)
	// ErrDenied: the peer may not use the export, or the server's policy
	// refuses the option (NBD_REP_ERR_POLICY). An Exports directory
	// returns it to refuse a peer.
	ErrDenied = errno.New("nbd: permission denied", syscall.EACCES)
	// ErrExportGone: the export went away while connections to it were
	// open. A Backend returns it (or any error matching
	// syscall.ESHUTDOWN) for every request after its export was removed;
	// the connection then answers NBD_ESHUTDOWN, as the spec asks of a
	// server going away, and the client disconnects.
	ErrExportGone = errno.New("nbd: export removed", syscall.ESHUTDOWN)
	// ErrProtocol: the peer broke the protocol; the session ends.
	ErrProtocol = errno.New("nbd: protocol error", syscall.EPROTO)
	// ErrUnsupported: the server does not offer what the client asked
	// (a command the transmission flags did not expose, TLS, structured
	// replies a request needs).
	ErrUnsupported = errno.New("nbd: not supported by the server", syscall.EOPNOTSUPP)
	// ErrTLSRequired: the server wants TLS first (NBD_REP_ERR_TLS_REQD).
	ErrTLSRequired = errno.New("nbd: the server requires TLS", syscall.EACCES)
	// ErrShutdown: the server is shutting down (NBD_REP_ERR_SHUTDOWN
	// during the handshake).
	ErrShutdown = errno.New("nbd: server shutting down", syscall.ESHUTDOWN)
	// ErrClosed: the client connection is closed or has died; every
	// request in flight and every later one fails with it (wrapping the
	// cause).
	ErrClosed = errno.New("nbd: connection closed", syscall.ENOTCONN)
	// ErrReadOnly: the client was asked to write to an export the server
	// flagged read-only.
	ErrReadOnly = errno.New("nbd: export is read-only", syscall.EROFS)
	// ErrRange: a request lies outside the export.
	ErrRange = errno.New("nbd: request outside the export", syscall.EINVAL)
)

// OffsetError is a failure at a byte offset of the export. A Backend
// returns one from WriteZeroes, Trim or BlockStatus to say where the
// failure lies (ReadAt and WriteAt say it by their count); the server
// then sends NBD_REPLY_TYPE_ERROR_OFFSET.
type OffsetError struct {
	Offset int64 // byte offset of the export at which the failure lies
	Err    error // the cause; its errno is the one sent
}

func (e *OffsetError) Error() string { return fmt.Sprintf("at byte %d: %v", e.Offset, e.Err) }

// Unwrap returns the cause.
func (e *OffsetError) Unwrap() error { return e.Err }

// Error is a request the server failed: the command, the server's error
// value, its message if it sent one and, when it sent
// NBD_REPLY_TYPE_ERROR_OFFSET, the offset of the failure. It matches its
// Errno (and so the syscall.Errno: errors.Is(err, syscall.EIO) is a media
// error of the remote device).
type Error struct {
	Op        string // "read", "write", "flush", "trim", "write zeroes", "block status"
	Errno     Errno
	Message   string // the server's message, sanitised; may be empty
	Offset    int64  // the failing byte offset of the export, if HasOffset
	HasOffset bool
}

func (e *Error) Error() string {
	s := "nbd: " + e.Op + ": " + e.Errno.Error()
	if e.HasOffset {
		s += fmt.Sprintf(" at byte %d", e.Offset)
	}
	if e.Message != "" {
		s += " (server: " + e.Message + ")"
	}
	return s
}

// Unwrap returns the Errno.
func (e *Error) Unwrap() error { return e.Errno }

// errnoOf maps a backend's error to the value sent, as the spec's
// "Error values" section asks (EDQUOT and EFBIG are ENOSPC; ENOTSUP only
// for a fast zero, EOVERFLOW only for a read that may not fragment).
// Errors of no known errno are NBD_EIO: a backend's unexplained failure is
// a failure of the medium as far as the client can tell.
func errnoOf(err error, cmdFlags uint16) Errno {
	if err == nil {
		return 0
	}
	var ne Errno
	if errors.As(err, &ne) {
		return ne
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ESHUTDOWN
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return EIO
	}
	e, ok := errno.Of(err)
	if !ok {
		return EIO
	}
	switch e {
	case syscall.EPERM, syscall.EROFS, syscall.EACCES:
		return EPERM
	case syscall.EIO:
		return EIO
	case syscall.ENOMEM:
		return ENOMEM
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return ENOSPC
	case syscall.ESHUTDOWN:
		return ESHUTDOWN
	case syscall.EOPNOTSUPP:
		if cmdFlags&cmdFlagFastZero != 0 {
			return ENOTSUP
		}
		return EINVAL
	case syscall.EOVERFLOW:
		if cmdFlags&cmdFlagDF != 0 {
			return EOVERFLOW
		}
		return EINVAL
	case syscall.EINVAL, syscall.ERANGE:
		return EINVAL
	}
	return EIO
}
