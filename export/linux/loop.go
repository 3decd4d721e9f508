package linux

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/errno"
)

// Errors of the loop calls; each also matches the errno shown.
var (
	// ErrNoDirectIO: the loop driver attached the file but would not do
	// direct I/O on it (the loop is detached again).
	ErrNoDirectIO = errno.New("loop device refused direct I/O on the backing file", syscall.EINVAL)
	// ErrNotAttached: the loop device has no backing file.
	ErrNotAttached = errno.New("loop device is not attached", syscall.ENXIO)
)

// TagSize is the most bytes of a Tag the kernel keeps (lo_file_name is
// 64 bytes with its terminating NUL).
const TagSize = unix.LO_NAME_SIZE - 1

// LoopConfig is how AttachLoop sets up a loop device.
type LoopConfig struct {
	// BlockSize is the logical block size; 0 means 512.
	BlockSize uint32
	// DirectIO asks for LO_FLAGS_DIRECT_IO; AttachLoop fails with
	// ErrNoDirectIO if the driver does not keep it.
	DirectIO bool
	// ReadOnly is LO_FLAGS_READ_ONLY.
	ReadOnly bool
	// Tag is stored in lo_file_name (at most TagSize bytes; longer is
	// truncated), where LoopStatus reads it back: the mark by which a
	// process finds its own loops after a restart. sysfs's backing_file,
	// which losetup prints, is the file's path, not this.
	Tag string
}

// Loop is an attached loop device.
type Loop struct {
	Number int
	Path   string // /dev/loopN
	Dev    Dev
}

// LoopInfo is what the kernel says of a loop device.
type LoopInfo struct {
	Loop
	// BackingFile is sysfs's backing_file: the path of the file as the
	// kernel prints it now (it follows renames; " (deleted)" is appended
	// once the file is unlinked; a file in a detached mount is shown
	// relative to that mount).
	BackingFile string
	DirectIO    bool
	Autoclear   bool
	ReadOnly    bool
	// The fields below are only filled by LoopStatus, which opens the
	// device.
	BackingDev Dev    // lo_device: st_dev of the backing file
	BackingIno uint64 // lo_inode
	Tag        string // lo_file_name
	Flags      uint32 // LO_FLAGS_*
}

const loopControl = "/dev/loop-control"

// AttachLoop binds a free loop device to backing, the way `losetup -f
// --show` does but in one LOOP_CONFIGURE call, and returns it. A loop not
// configured ReadOnly is made writable (BLKROSET 0): the kernel keeps a
// BLKROSET across a detach, for the next user of the device. Another
// process may take the free device between LOOP_CTL_GET_FREE and
// LOOP_CONFIGURE; AttachLoop then asks for another.
func AttachLoop(backing *os.File, c LoopConfig) (Loop, error) {
	if c.BlockSize == 0 {
		c.BlockSize = 512
	}
	ctl, err := unix.Open(loopControl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Loop{}, &os.PathError{Op: "open", Path: loopControl, Err: err}
	}
	defer unix.Close(ctl)
	raw, err := backing.SyscallConn()
	if err != nil {
		return Loop{}, err
	}
	cfg := unix.LoopConfig{Size: c.BlockSize}
	if c.DirectIO {
		cfg.Info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	if c.ReadOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(cfg.Info.File_name[:TagSize], c.Tag)
	for attempt := 0; attempt < 64; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return Loop{}, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		l := Loop{Number: n, Path: "/dev/loop" + strconv.Itoa(n)}
		fd, err := openNode(l.Path, unix.O_RDWR)
		if err != nil {
			return Loop{}, err
		}
		var cerr error
		if err := raw.Control(func(bfd uintptr) {
			cfg.Fd = uint32(bfd)
			cerr = unix.IoctlLoopConfigure(fd, &cfg)
		}); err != nil {
			unix.Close(fd)
			return Loop{}, err
		}
		if errors.Is(cerr, unix.EBUSY) {
			unix.Close(fd) // taken by another process since GET_FREE
			continue
		}
		if cerr != nil {
			unix.Close(fd)
			return Loop{}, fmt.Errorf("LOOP_CONFIGURE %s: %w", l.Path, cerr)
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err == nil && c.DirectIO && info.Flags&unix.LO_FLAGS_DIRECT_IO == 0 {
			err = ErrNoDirectIO
		}
		if err == nil && !c.ReadOnly {
			// BLKROSET outlives a loop's binding: a read-only flag a
			// previous user of this loop device set would be inherited.
			v := int32(0)
			if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKROSET, uintptr(unsafe.Pointer(&v))); e != 0 {
				err = fmt.Errorf("BLKROSET: %w", e)
			}
		}
		var st unix.Stat_t
		if err == nil {
			err = unix.Fstat(fd, &st)
		}
		if err != nil {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			unix.Close(fd)
			return Loop{}, fmt.Errorf("%s: %w", l.Path, err)
		}
		unix.Close(fd)
		l.Dev = DevOf(st.Rdev)
		return l, nil
	}
	return Loop{}, fmt.Errorf("no free loop device: every one offered was taken first: %w", syscall.EBUSY)
}

// openNode opens a loop device node, waiting briefly for devtmpfs to
// create one the driver has just added.
func openNode(path string, flags int) (int, error) {
	for wait := time.Millisecond; ; wait *= 2 {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if err != unix.ENOENT || wait > 256*time.Millisecond {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		time.Sleep(wait)
	}
}

// LoopStatus returns what the kernel says of the loop device at path
// (LOOP_GET_STATUS64, and sysfs); ErrNotAttached if it has no backing
// file. It opens the device read-only for the call.
func LoopStatus(path string) (LoopInfo, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) {
		// The driver refuses opens of a loop being torn down.
		return LoopInfo{}, fmt.Errorf("%s: %w", path, ErrNotAttached)
	}
	if err != nil {
		return LoopInfo{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return LoopInfo{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return LoopInfo{}, &os.PathError{Op: "open", Path: path, Err: syscall.ENOTBLK}
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	if errors.Is(err, unix.ENXIO) {
		return LoopInfo{}, fmt.Errorf("%s: %w", path, ErrNotAttached)
	}
	if err != nil {
		return LoopInfo{}, fmt.Errorf("LOOP_GET_STATUS64 %s: %w", path, err)
	}
	li := LoopInfo{
		Loop:       Loop{Number: int(info.Number), Path: path, Dev: DevOf(st.Rdev)},
		BackingDev: DevOf(info.Device),
		BackingIno: info.Inode,
		Flags:      info.Flags,
		DirectIO:   info.Flags&unix.LO_FLAGS_DIRECT_IO != 0,
		Autoclear:  info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0,
		ReadOnly:   info.Flags&unix.LO_FLAGS_READ_ONLY != 0,
	}
	name := info.File_name[:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	li.Tag = string(name)
	li.BackingFile, _ = readSysfs(sysBlock(li.Dev), "loop/backing_file")
	return li, nil
}

// DetachLoop is LOOP_CLR_FD on the loop device at path. The kernel detaches
// a loop at the last close of the device, so: when no one else has it
// open, the loop is detached when DetachLoop returns; when someone does (a
// mounted filesystem, a reader holding it open), the kernel only marks it
// autoclear and it detaches when that opener closes: deferred is then
// true. Detaching a loop that is not attached is not an error.
func DetachLoop(path string) (deferred bool, err error) {
	before, err := LoopStatus(path)
	if errors.Is(err, ErrNotAttached) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
	unix.Close(fd) // the last close is what detaches it
	if errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("LOOP_CLR_FD %s: %w", path, err)
	}
	after, err := LoopStatus(path)
	if errors.Is(err, ErrNotAttached) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Still bound to the same file: someone holds it open.
	same := after.BackingDev == before.BackingDev && after.BackingIno == before.BackingIno
	return same, nil
}

// SetCapacity is LOOP_SET_CAPACITY: the loop device at path takes the
// backing file's current size as its own.
func SetCapacity(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", path, err)
	}
	return nil
}

// Loops lists the attached loop devices from sysfs, without opening any
// (BackingDev, BackingIno, Tag and Flags are left empty; LoopStatus gives
// them).
func Loops() ([]LoopInfo, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var out []LoopInfo
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), "loop")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		dir := filepath.Join("/sys/block", e.Name())
		back, err := readSysfs(dir, "loop/backing_file")
		if err != nil {
			continue // not attached (or gone meanwhile)
		}
		devText, err := readSysfs(dir, "dev")
		if err != nil {
			continue
		}
		d, err := ParseDev(devText)
		if err != nil {
			continue
		}
		li := LoopInfo{Loop: Loop{Number: n, Path: "/dev/" + e.Name(), Dev: d}, BackingFile: back}
		li.DirectIO = sysfsBool(dir, "loop/dio")
		li.Autoclear = sysfsBool(dir, "loop/autoclear")
		li.ReadOnly = sysfsBool(dir, "ro")
		out = append(out, li)
	}
	return out, nil
}

func sysBlock(d Dev) string { return "/sys/dev/block/" + d.String() }

func readSysfs(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

func sysfsBool(dir, name string) bool {
	s, err := readSysfs(dir, name)
	return err == nil && s == "1"
}
