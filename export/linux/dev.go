package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dev is a device number.
type Dev struct {
	Major, Minor uint32
}

// DevOf returns the device number packed in an st_rdev or st_dev.
func DevOf(rdev uint64) Dev {
	return Dev{Major: unix.Major(rdev), Minor: unix.Minor(rdev)}
}

// Rdev returns d packed as the kernel packs st_rdev.
func (d Dev) Rdev() uint64 { return unix.Mkdev(d.Major, d.Minor) }

// String returns "major:minor".
func (d Dev) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// ParseDev parses "major:minor" (decimal, as mountinfo and dmsetup print
// it).
func ParseDev(s string) (Dev, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return Dev{}, fmt.Errorf("device number %q: want major:minor", s)
	}
	a, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return Dev{}, fmt.Errorf("device number %q: bad major: %w", s, err)
	}
	b, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return Dev{}, fmt.Errorf("device number %q: bad minor: %w", s, err)
	}
	// The kernel's dev_t has 12 bits of major and 20 of minor.
	if a >= 1<<12 || b >= 1<<20 {
		return Dev{}, fmt.Errorf("device number %q: out of range", s)
	}
	return Dev{Major: uint32(a), Minor: uint32(b)}, nil
}

// BlockDevOf returns the device number of the block device node at path
// (following symlinks); an error if path is not a block device.
func BlockDevOf(path string) (Dev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Dev{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Dev{}, &os.PathError{Op: "stat", Path: path, Err: syscall.ENOTBLK}
	}
	return DevOf(st.Rdev), nil
}
