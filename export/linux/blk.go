package linux

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/errno"
)

// ErrHeld is what ProbeExclusive and OpenExclusive return for a block
// device that a mounted filesystem or another exclusive opener holds.
var ErrHeld = errno.New("block device is held exclusively", syscall.EBUSY)

// Size returns the size in bytes of the block device at path
// (BLKGETSIZE64).
func Size(path string) (int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var n uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); e != 0 {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", path, e)
	}
	return int64(n), nil
}

// SetReadOnly is BLKROSET: the block device at path refuses writes (EPERM)
// while ro holds, as `blockdev --setro` makes it.
func SetReadOnly(path string, ro bool) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	v := int32(0)
	if ro {
		v = 1
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKROSET, uintptr(unsafe.Pointer(&v))); e != 0 {
		return fmt.Errorf("BLKROSET %s: %w", path, e)
	}
	return nil
}

// ReadOnly is BLKROGET.
func ReadOnly(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	v, err := unix.IoctlGetInt(fd, unix.BLKROGET)
	if err != nil {
		return false, fmt.Errorf("BLKROGET %s: %w", path, err)
	}
	return v != 0, nil
}

// ProbeExclusive opens the block device at path with O_EXCL and closes it
// again: ErrHeld if a mounted filesystem or another process holds it
// exclusively, nil if not. The probe is itself an exclusive open for its
// moment: a mount racing with it fails with EBUSY.
func ProbeExclusive(path string) error {
	f, err := OpenExclusive(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// OpenExclusive opens the block device at path read-only with O_EXCL and
// keeps it open: while the file is open no filesystem can be mounted on
// the device and no other process can open it exclusively. ErrHeld if one
// already does.
func OpenExclusive(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("%s: %w", path, ErrHeld)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Holders returns the names in sysfs's holders/ of the block device d (the
// md or dm devices stacked on it), sorted.
func Holders(d Dev) ([]string, error) {
	ents, err := os.ReadDir(sysBlock(d) + "/holders")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}
