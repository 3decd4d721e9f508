package fsfiles

import (
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
)

// Errors of this package. Each also matches the errno a kernel would give
// for it, through errors.Is.
var (
	// ErrNotMounted: no filesystem is mounted on the device (in this
	// process's mount namespace), or the one that was is gone.
	ErrNotMounted = errno.New("no filesystem mounted on the device", syscall.ENOENT)
	// ErrUnsupported: the filesystem can say neither which files own its
	// blocks (GETFSMAP with owners) nor where a file's blocks are (FIEMAP).
	ErrUnsupported = errno.New("filesystem cannot map blocks to files", syscall.EOPNOTSUPP)
	// ErrClosed: the FS or Cache was closed.
	ErrClosed = errno.New("closed", syscall.EBADF)
	// ErrMalformed: kernel output (mountinfo, a getfsmap or fiemap reply,
	// a directory listing, a superblock) is not in the expected format.
	ErrMalformed = errno.New("malformed kernel data", syscall.EINVAL)
)

// DeviceError is an error about one block device: "fsfiles: 7:0 (/mnt):
// op: cause". It unwraps to the cause, so errors.Is(err, ErrNotMounted)
// and errors.Is(err, syscall.EACCES) both work through it.
type DeviceError struct {
	Major, Minor uint32
	Mount        string // the mount point used, when one was found
	Op           string // what was being done: "mount", "getfsmap", "walk"...
	Err          error
}

func (e *DeviceError) Error() string {
	if e.Mount != "" {
		return fmt.Sprintf("fsfiles: %d:%d (%s): %s: %v", e.Major, e.Minor, e.Mount, e.Op, e.Err)
	}
	return fmt.Sprintf("fsfiles: %d:%d: %s: %v", e.Major, e.Minor, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *DeviceError) Unwrap() error { return e.Err }
