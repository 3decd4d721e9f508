package sysfswatch

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxSize bounds what is read of one file. A sysfs attribute holds at
// most a page; a badblocks file is at most 512 lines of 20-odd bytes.
const MaxSize = 1 << 20

// file is one watched path. Only the Watcher's goroutine touches it.
type file struct {
	path     string
	fd       int // -1 while the path cannot be opened
	dev, ino uint64
	armed    bool // fd is in the poll set: its last read succeeded
	known    bool // a Change was queued for it
	data     []byte
	err      error
}

func (f *file) closeFD() {
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	f.armed = false
}

// openRegular opens path for reading and checks that it is a regular
// file (sysfs attributes are; a FIFO or a device could block or never
// end). O_NONBLOCK keeps the open of a FIFO from blocking.
func openRegular(path string) (fd int, st unix.Stat_t, err error) {
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, st, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return fd, st, nil
}

// readAll reads fd from offset 0 to its end into buf, which it may grow,
// and returns the filled part. Seeking to 0 and reading is what re-arms
// a sysfs attribute's notification.
func readAll(fd int, buf []byte) ([]byte, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return buf[:0], err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(4096, cap(buf)))
		}
		n, err := unix.Read(fd, buf[len(buf):min(cap(buf), MaxSize+1)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return buf, err
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > MaxSize {
			return buf[:0], ErrTooLarge
		}
	}
}

// sameErr reports whether two read errors are the same condition, so
// that a file that stays unreadable is reported once: same errno (or same
// sentinel), whatever the operation that met it.
func sameErr(a, b error) bool {
	var ea, eb syscall.Errno
	if errors.As(a, &ea) && errors.As(b, &eb) {
		return ea == eb
	}
	for _, s := range []error{ErrNotRegular, ErrTooLarge} {
		if errors.Is(a, s) && errors.Is(b, s) {
			return true
		}
	}
	return a.Error() == b.Error()
}

// update records the outcome of a read and tells whether it is news: a
// first outcome, different content, an error after content (or a
// different error), content after an error.
func (f *file) update(data []byte, err error) bool {
	if err != nil {
		if f.known && f.err != nil && sameErr(f.err, err) {
			return false
		}
		f.known, f.err, f.data = true, err, nil
		return true
	}
	if f.known && f.err == nil && bytes.Equal(f.data, data) {
		return false
	}
	f.known, f.err, f.data = true, nil, bytes.Clone(data)
	return true
}
