package linux

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FIFREEZE and FITHAW are _IOWR('X', 119, int) and _IOWR('X', 120, int)
// (include/uapi/linux/fs.h).
const (
	fiFreeze = 0xc0045877
	fiThaw   = 0xc0045878
)

// Freeze is FIFREEZE on the filesystem mounted at mountPoint, as
// `fsfreeze -f` does: the kernel writes back its dirty data and metadata,
// makes it consistent on the device, and blocks new writes until Thaw. It
// fails with EBUSY if the filesystem is frozen already, EOPNOTSUPP if it
// cannot be frozen.
func Freeze(mountPoint string) error { return fsIoctl(mountPoint, fiFreeze, "FIFREEZE") }

// Thaw is FITHAW (`fsfreeze -u`); EINVAL if the filesystem is not frozen.
func Thaw(mountPoint string) error { return fsIoctl(mountPoint, fiThaw, "FITHAW") }

func fsIoctl(path string, req uint, name string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, req, 0); err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	return nil
}
