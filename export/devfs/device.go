package devfs

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/daxstack/daxstack/internal/errno"
)

// Device is what one device file serves: byte-addressed I/O on a mapped
// device, close to io.ReaderAt and io.WriterAt with a context. The
// context ends when the client gives up (a FUSE interrupt: the reading
// process got a signal); a device that makes I/O wait (suspended) must
// stop waiting then and return ctx.Err().
//
// Errors: one that matches syscall.EIO (errors.Is) is a media error; one
// that matches another errno is passed to the client as that errno
// (EROFS, ENOSPC, ...); a context error becomes EINTR; anything else is
// EIO.
type Device interface {
	// ReadAt reads len(p) bytes at off. When a sector fails it returns
	// the bytes before that sector (n of them, all good) and the error:
	// this is what makes a failure sector-exact through a direct-I/O loop
	// device.
	ReadAt(ctx context.Context, p []byte, off int64) (n int, err error)
	// WriteAt writes p at off. Writing over failed sectors clears them.
	// A partial write is a failed write (n is not looked at when err is
	// not nil).
	WriteAt(ctx context.Context, p []byte, off int64) (n int, err error)
	// WriteZeroes writes n zero bytes at off; afterwards the range reads
	// as zeros, and failed sectors it covers are cleared as by a write.
	WriteZeroes(ctx context.Context, off, n int64) error
	// Discard is a hint that [off, off+n) is unused. It may change
	// nothing (afterwards the range reads as before, or as zeros where
	// the leaf really discards).
	Discard(ctx context.Context, off, n int64) error
	// Flush makes every completed write durable.
	Flush(ctx context.Context) error
}

// FUAWriter is implemented by a Device that can make one write durable by
// itself (forced unit access) more cheaply than WriteAt then Flush. devfs
// uses it for writes the client asked to be synchronous (O_SYNC,
// O_DSYNC, RWF_DSYNC); without it such a write is WriteAt then Flush.
type FUAWriter interface {
	WriteAtFUA(ctx context.Context, p []byte, off int64) (n int, err error)
}

// ReadLender is implemented by a Device that can lend the bytes it holds
// instead of copying them out (slices of its mapping of a leaf): devfs
// hands the slices to the kernel, which copies them once, straight into
// the client's pages. A read then costs one copy instead of two (ReadAt
// into devfs's buffer, then the kernel's copy from it).
type ReadLender interface {
	// LendAt returns up to n bytes at off as pieces, in order, with what
	// ReadAt would have returned as error: at a bad sector the pieces
	// hold the good bytes before it. release (which may be nil) is called
	// once the kernel has copied the bytes; until then they must stay
	// mapped. They are read while other requests may write them, as a
	// block device orders no overlapping reads and writes. Lend only
	// memory whose reading can't fault: a fault in the kernel's copy fails
	// the request with EIO.
	LendAt(ctx context.Context, off int64, n int) (p [][]byte, release func(), err error)
}

// Attr is what the kernel shows of a device file.
type Attr struct {
	// Size in bytes: the file's size and the end of its I/O.
	Size int64
	// ReadOnly devices refuse opens for writing, and writes, with EROFS.
	ReadOnly bool
	// Ino is the inode number (st_ino); 0 lets devfs pick one. It stays
	// the file's through renames and size changes; give the same number
	// across daemon restarts to keep it stable there too.
	Ino uint64
}

// Info is a device file as devfs has it now.
type Info struct {
	Name string
	Attr
	// Users counts the open files of the device file that are not
	// daxstack's own plumbing (OpenInternal): the opens that make the
	// device busy.
	Users int
	// Opens counts every open file, plumbing included.
	Opens int
}

// Errors; each also matches, with errors.Is, the errno shown.
var (
	// ErrNotFound: no device file by that name.
	ErrNotFound = errno.New("no such device file", syscall.ENOENT)
	// ErrExists: a device file by that name (or with that inode number)
	// exists already.
	ErrExists = errno.New("device file exists", syscall.EEXIST)
	// ErrInvalid: a name or size devfs cannot serve.
	ErrInvalid = errno.New("invalid device file name or size", syscall.EINVAL)
	// ErrBusy: the device file is open by a client.
	ErrBusy = errno.New("device file is in use", syscall.EBUSY)
	// ErrClosed: the file system is unmounted.
	ErrClosed = errno.New("device files are not mounted", syscall.ENOTCONN)
	// ErrMounted: another live file system is mounted on the directory.
	ErrMounted = errno.New("directory is a live mount point", syscall.EBUSY)
)

// BusyError is a refusal because clients hold the device file open.
type BusyError struct {
	Name  string
	Users int
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("device file %s is open by %d client(s)", e.Name, e.Users)
}

// Is makes a BusyError match ErrBusy (and so EBUSY).
func (e *BusyError) Is(target error) bool { return target == ErrBusy || target == syscall.EBUSY }

// status turns a Device error into the FUSE reply.
func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fuse.EINTR
	}
	if e, ok := errno.Of(err); ok && e != 0 {
		return fuse.Status(e)
	}
	return fuse.EIO
}

// validName reports whether name can be a file in the mount: a single path
// component the kernel accepts.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}
