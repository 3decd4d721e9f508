package nbdleaf

import (
	"fmt"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/errno"
)

// Errors of this package. Each also matches the errno a kernel would give
// for it, through errors.Is; those of the dax package with the same
// meaning match the same errno.
var (
	// ErrNotRef: the reference is not an NBD URI daxstack takes.
	ErrNotRef = errno.New("not an NBD URI", syscall.EINVAL)
	// ErrLost: the export is gone (see LostError for why); I/O fails
	// with it until the leaf is restored.
	ErrLost = errno.New("device lost", syscall.ENXIO)
	// ErrChanged: a server answered for the leaf's URI with another
	// export than the one recorded (see IdentityError).
	ErrChanged = errno.New("another export answers at the leaf's address", syscall.ENXIO)
	// ErrDisconnected: no connection to the server could be made for
	// longer than the grace period.
	ErrDisconnected = errno.New("no connection to the server", syscall.ENOTCONN)
	// ErrHeld: the leaf was marked lost by SetLost.
	ErrHeld = errno.New("marked lost", syscall.ENXIO)
	// ErrClosed: the leaf was closed.
	ErrClosed = errno.New("leaf is closed", syscall.EBADF)
	// ErrRange: the sectors or bytes given lie outside the leaf.
	ErrRange = errno.New("sectors outside the leaf", syscall.EINVAL)
	// ErrReadOnly: the server exports the leaf read-only.
	ErrReadOnly = errno.New("leaf is read-only", syscall.EROFS)
	// ErrUnsupported: the server does not offer the command
	// (WRITE_ZEROES, TRIM).
	ErrUnsupported = errno.New("not offered by the server", syscall.EOPNOTSUPP)
	// ErrRemoteList: the leaf's poison list is the server's
	// (daxstack:badblocks) and cannot be changed from here.
	ErrRemoteList = errno.New("the server keeps this poison list", syscall.EOPNOTSUPP)
	// ErrUnflushed: a connection broke while it held writes that no
	// flush had made durable, so they may be lost: Sync reports it once.
	ErrUnflushed = errno.New("writes made on a connection that broke before a flush may be lost", syscall.EIO)
	// ErrDenied: a peer may not make the daemon use the URI
	// (CheckAccess).
	ErrDenied = errno.New("permission denied", syscall.EACCES)
	// ErrTLS: the URI asks for TLS (nbds://) and the Opener has no TLS
	// configuration.
	ErrTLS = errno.New("nbds:// needs a TLS configuration (certificate, key, CA)", syscall.EINVAL)
)

// PoisonError is I/O that touched a bad sector: a read of it, a write
// that covers it only in part, or a request the server kept failing with
// NBD_EIO down to that sector. It matches syscall.EIO.
type PoisonError struct {
	Leaf string        // the leaf's Name
	Bad  extent.Extent // the first bad sectors met, within the I/O's range
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("nbdleaf: %s: media error at sectors %v: %v", e.Leaf, e.Bad, syscall.EIO)
}

// Unwrap returns syscall.EIO.
func (e *PoisonError) Unwrap() error { return syscall.EIO }

// IdentityError is a server that answered for the leaf's URI with another
// export: another size or description. It matches ErrChanged (and
// syscall.ENXIO).
type IdentityError struct {
	Want, Got Identity
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("%v: recorded %s, found %s", ErrChanged, e.Want.describe(), e.Got.describe())
}

// Unwrap returns ErrChanged.
func (e *IdentityError) Unwrap() error { return ErrChanged }

// LostError is I/O on a lost leaf. It matches ErrLost (and syscall.ENXIO)
// and its reason: ErrDisconnected (wrapping the last dial error),
// ErrChanged (an *IdentityError), or ErrHeld.
type LostError struct {
	Leaf   string
	Since  time.Time // when the leaf was found lost
	Reason error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("nbdleaf: %s: %v since %s: %v", e.Leaf, ErrLost, e.Since.Format(time.RFC3339), e.Reason)
}

// Unwrap returns ErrLost and the reason.
func (e *LostError) Unwrap() []error { return []error{ErrLost, e.Reason} }

// leafError says which leaf an error is about: "nbdleaf: NAME: cause".
func leafError(name string, err error) error { return fmt.Errorf("nbdleaf: %s: %w", name, err) }
