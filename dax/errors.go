package dax

import (
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/errno"
)

// Errors of this package. Each also matches the errno a kernel would give
// for it, through errors.Is.
var (
	// ErrUnsupported: the reference is neither a block device, a
	// device-dax character device nor a regular file.
	ErrUnsupported = errno.New("not a block device, device-dax device or regular file", syscall.ENOTBLK)
	// ErrLost: the leaf's device has gone away (or, for a leaf made by
	// Missing, was never found).
	ErrLost = errno.New("device lost", syscall.ENXIO)
	// ErrChanged: the path of a leaf names another device or file than the
	// one stat'ed when the leaf was opened.
	ErrChanged = errno.New("device or file changed since it was opened", syscall.ENXIO)
	// ErrClosed: the leaf was closed.
	ErrClosed = errno.New("leaf is closed", syscall.EBADF)
	// ErrReadOnly: the leaf could only be opened read-only.
	ErrReadOnly = errno.New("leaf is read-only", syscall.EROFS)
	// ErrRange: the sectors given lie outside the leaf.
	ErrRange = errno.New("sectors outside the leaf", syscall.EINVAL)
	// ErrBadblocks: a badblocks list is not in the kernel's format.
	ErrBadblocks = errno.New("malformed badblocks list", syscall.EINVAL)
	// ErrKernelList: the leaf's poison list belongs to the kernel and
	// cannot be changed from here (device-dax: the nd region's list, which
	// ndctl inject-error and clear-errors change).
	ErrKernelList = errno.New("the kernel keeps this poison list read-only", syscall.EOPNOTSUPP)
)

// PoisonError is I/O that touched a bad sector: a read of it, or a write
// that covers it only in part (or that could not clear it). It matches
// syscall.EIO.
type PoisonError struct {
	Leaf string        // the leaf's Name
	Bad  extent.Extent // the bad sectors met, within the I/O's range
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("dax: %s: media error at sectors %v: %v", e.Leaf, e.Bad, syscall.EIO)
}

// Unwrap returns syscall.EIO.
func (e *PoisonError) Unwrap() error { return syscall.EIO }

// FaultError is a copy to or from a leaf's mapping that faulted (SIGBUS or
// SIGSEGV: a file truncated under the mapping, a media error the poison
// list did not know), or a sector the device failed without it being in
// the list. It matches syscall.EIO.
type FaultError struct {
	Leaf   string // the leaf's Name
	Op     string // "read" or "write"
	Offset int64  // byte offset of the leaf at which the failure lies
	Err    error  // the cause when the kernel gave one (EIO from O_DIRECT I/O)
}

func (e *FaultError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("dax: %s: %s failed at byte %d: %v", e.Leaf, e.Op, e.Offset, e.Err)
	}
	return fmt.Sprintf("dax: %s: %s faulted at byte %d: %v", e.Leaf, e.Op, e.Offset, syscall.EIO)
}

// Unwrap returns the cause, or syscall.EIO.
func (e *FaultError) Unwrap() error {
	if e.Err != nil {
		return e.Err
	}
	return syscall.EIO
}

// leafError says which leaf an error is about: "dax: NAME: cause".
func leafError(name string, err error) error { return fmt.Errorf("dax: %s: %w", name, err) }
