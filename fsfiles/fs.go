package fsfiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Options are the places an FS reads and the choices it makes; the zero
// value is the running system.
type Options struct {
	MountInfo string // mountinfo to read (default "/proc/self/mountinfo")
	Proc      string // procfs, for open files (default "/proc")
	Sys       string // sysfs, for the device's size (default "/sys")

	// NoWatch: do not follow changes with fanotify. Every Lookup that
	// needs the walk's index then walks again (what a filesystem that
	// fanotify cannot watch always does).
	NoWatch bool
	// ForceWalk: find files through the FIEMAP walk even where GETFSMAP
	// names owners (for comparisons).
	ForceWalk bool
	// Workers walking the tree (default: GOMAXPROCS, at least 2).
	Workers int
	// MaxPieces bounds the work of one Lookup: the pieces (runs of hit
	// sectors) gathered before it stops and says Truncated. Default 1<<20.
	MaxPieces int
}

func (o Options) withDefaults() Options {
	if o.MountInfo == "" {
		o.MountInfo = "/proc/self/mountinfo"
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Sys == "" {
		o.Sys = "/sys"
	}
	if o.MaxPieces <= 0 {
		o.MaxPieces = 1 << 20
	}
	return o
}

// FS is the filesystem mounted on one block device, ready to say what
// that device's sectors hold. It keeps, per mount, the index of a walk (or
// only the names, where GETFSMAP names owners) and the fanotify watch that
// keeps the index current. An FS is safe for concurrent use; lookups are
// served one at a time.
type FS struct {
	major, minor uint32
	dev          uint64 // unix.Mkdev(major, minor): st_dev of the filesystem's files
	opts         Options

	mu       sync.Mutex
	closed   bool
	mount    Mount
	unique   uint64 // the mount's never-reused ID (STATX_MNT_ID_UNIQUE), 0 if the kernel has none
	stamp    uint64 // without one: the filesystem instance's sysfs directory inode (see sbStamp)
	sectors  uint64 // device size
	caps     caps
	st       *state // what is known of the tree; nil until needed
	watch    *watcher
	watchErr error    // why there is no watch, if it failed
	devFile  *os.File // the block device, for reading ext4 metadata (opened on demand)
	table    mountTable
}

// caps is what the mounted filesystem can answer.
type caps struct {
	fsmap  bool // GETFSMAP works (free space and some metadata)
	owners bool // GETFSMAP names the inode of every block (XFS with rmapbt)
	xfs    *xfsGeom
	ext4   *ext4Super
}

// Open finds the filesystem mounted on block device major:minor. It fails
// with an error matching ErrNotMounted when there is none. Open reads
// mountinfo and the filesystem's geometry only: the first Lookup (or
// Prepare) builds what lookups need.
func Open(major, minor uint32) (*FS, error) { return OpenWith(major, minor, Options{}) }

// OpenWith is Open with options.
func OpenWith(major, minor uint32, opts Options) (*FS, error) {
	fs := &FS{major: major, minor: minor, dev: unix.Mkdev(major, minor), opts: opts.withDefaults()}
	fs.table.path = fs.opts.MountInfo
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.attach(); err != nil {
		return nil, err
	}
	return fs, nil
}

func (fs *FS) errorf(op string, err error) error {
	return &DeviceError{Major: fs.major, Minor: fs.minor, Mount: fs.mount.Point, Op: op, Err: err}
}

// Mounted reports whether a filesystem is mounted on block device
// major:minor, by reading /proc/self/mountinfo (tens of microseconds).
func Mounted(major, minor uint32) (bool, error) {
	ms, err := readMountInfo("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	return len(MountsOf(ms, major, minor)) > 0, nil
}

// attach (re)resolves the mount and what the filesystem can do. fs.mu is
// held.
func (fs *FS) attach() error {
	m, err := fs.resolve()
	if err != nil {
		return err
	}
	fs.mount = m
	fs.unique = uniqueMountID(unix.AT_FDCWD, m.Point, unix.AT_NO_AUTOMOUNT)
	fs.stamp = 0
	if fs.unique == 0 {
		fs.stamp = fs.sbStamp()
	}
	size, err := readSectors(fs.opts.Sys, fs.major, fs.minor)
	if err != nil {
		return fs.errorf("device size", err)
	}
	fs.sectors = size
	root, err := fs.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	fs.refreshCaps(root)
	return nil
}

// isExt reports the filesystem types of the ext2/3/4 family, which share
// the superblock and (ext4's driver serves all three) GETFSMAP.
func isExt(fstype string) bool { return fstype == "ext4" || fstype == "ext3" || fstype == "ext2" }

// refreshCaps finds out again what the filesystem answers and its
// geometry (which an online grow changes). fs.mu is held.
func (fs *FS) refreshCaps(root int) {
	fs.caps = probe(root, fs.major, fs.minor, fs.mount.FSType)
	if isExt(fs.mount.FSType) {
		if f, err := fs.openDevice(); err == nil {
			buf := make([]byte, ext4SuperSize)
			if _, err := f.ReadAt(buf, ext4SuperOffset); err == nil {
				if sb, err := parseExt4Super(buf); err == nil {
					fs.caps.ext4 = &sb
				}
			}
		}
	}
}

// resolve picks the mount to use: the first of rankMounts whose mount
// point still shows that mount.
func (fs *FS) resolve() (Mount, error) {
	ms, err := fs.table.get()
	if err != nil {
		return Mount{}, &DeviceError{Major: fs.major, Minor: fs.minor, Op: "mountinfo", Err: err}
	}
	cands := rankMounts(MountsOf(ms, fs.major, fs.minor))
	for _, m := range cands {
		if fs.showsMount(m) {
			return m, nil
		}
	}
	if strings.HasPrefix(fs.table.path, "/proc/") {
		// None listed, or none shows itself: the table kept may be
		// stale (see mountTable.read).
		if ms, err = fs.table.read(); err != nil {
			return Mount{}, &DeviceError{Major: fs.major, Minor: fs.minor, Op: "mountinfo", Err: err}
		}
		cands = rankMounts(MountsOf(ms, fs.major, fs.minor))
		for _, m := range cands {
			if fs.showsMount(m) {
				return m, nil
			}
		}
	}
	if len(cands) > 0 {
		return Mount{}, &DeviceError{Major: fs.major, Minor: fs.minor, Op: "mount",
			Err: fmt.Errorf("%w: every mount point of it is covered by another mount", ErrNotMounted)}
	}
	return Mount{}, &DeviceError{Major: fs.major, Minor: fs.minor, Op: "mount", Err: ErrNotMounted}
}

// showsMount reports whether m's mount point reaches m itself (and not a
// mount stacked on it since).
func (fs *FS) showsMount(m Mount) bool {
	var stx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, m.Point, unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID|unix.STATX_INO, &stx) != nil {
		return false
	}
	return stx.Mnt_id == uint64(m.ID) && unix.Mkdev(stx.Dev_major, stx.Dev_minor) == fs.dev
}

// checkMount makes sure the mount in use is still there; when it is not,
// it resolves the device again and drops everything learnt from the old
// mount (the filesystem may have been unmounted and mounted again, or
// replaced). fs.mu is held.
func (fs *FS) checkMount() error {
	ms, err := fs.table.get()
	if err != nil {
		return fs.errorf("mountinfo", err)
	}
	for _, m := range ms {
		if m.ID == fs.mount.ID && m.Major == fs.major && m.Minor == fs.minor && fs.showsMount(m) && fs.sameInstance(m) {
			return nil
		}
	}
	fs.reset()
	return fs.attach()
}

// reset forgets the index and the watch. fs.mu is held.
func (fs *FS) reset() {
	if fs.watch != nil {
		fs.watch.close()
		fs.watch = nil
	}
	fs.st = nil
	if fs.devFile != nil {
		fs.devFile.Close()
		fs.devFile = nil
	}
}

// sameInstance reports whether mount m (with the ID of the one in use) is
// still that mount of the same filesystem instance: by the unique mount
// ID, or, on kernels without one, by the filesystem's sysfs stamp.
func (fs *FS) sameInstance(m Mount) bool {
	if fs.unique != 0 {
		return uniqueMountID(unix.AT_FDCWD, m.Point, unix.AT_NO_AUTOMOUNT) == fs.unique
	}
	return fs.stamp == 0 || fs.sbStamp() == fs.stamp
}

// sbStamp identifies the filesystem instance mounted on the device where
// the kernel has no unique mount IDs (before 6.8): ext4 and XFS make a
// directory /sys/fs/<driver>/<device> at each mount, and kernfs numbers
// each anew. 0 when there is none.
func (fs *FS) sbStamp() uint64 {
	link, err := os.Readlink(filepath.Join(fs.opts.Sys, "dev", "block", fmt.Sprintf("%d:%d", fs.major, fs.minor)))
	if err != nil {
		return 0
	}
	name := filepath.Base(link)
	for _, driver := range []string{"ext4", "xfs"} {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(fs.opts.Sys, "fs", driver, name), &st) == nil {
			return st.Ino
		}
	}
	return 0
}

// uniqueMountID returns the 64-bit mount ID the kernel never reuses
// (STATX_MNT_ID_UNIQUE, Linux 6.8), or 0. The mountinfo ID can be reused
// by the next mount once a mount is gone: a filesystem unmounted and
// mounted again (its index and watch stale) could show the same one.
func uniqueMountID(dir int, path string, flags int) uint64 {
	var stx unix.Statx_t
	if unix.Statx(dir, path, flags, unix.STATX_MNT_ID_UNIQUE, &stx) != nil || stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0
	}
	return stx.Mnt_id
}

// openRoot opens the mount's root directory (for ioctls: GETFSMAP, the
// XFS ones, open_by_handle_at) and checks that it is the mount in use.
func (fs *FS) openRoot() (int, error) {
	fd, err := openat(unix.AT_FDCWD, fs.mount.Point, openDir)
	if err != nil {
		return -1, fs.errorf("open mount point", err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID|unix.STATX_INO, &stx); err != nil {
		unix.Close(fd)
		return -1, fs.errorf("statx mount point", err)
	}
	if stx.Mnt_id != uint64(fs.mount.ID) || unix.Mkdev(stx.Dev_major, stx.Dev_minor) != fs.dev {
		unix.Close(fd)
		return -1, fs.errorf("open mount point", fmt.Errorf("%w: %s shows another mount now", ErrNotMounted, fs.mount.Point))
	}
	return fd, nil
}

// fsSectors returns the filesystem's size in sectors where its geometry
// says (0: unknown, the whole device is taken as the filesystem's).
func (c caps) fsSectors() uint64 {
	switch {
	case c.xfs != nil:
		return c.xfs.DataBlocks * c.xfs.sectorsPerBlock()
	case c.ext4 != nil:
		return c.ext4.BlocksCount * (c.ext4.BlockSize / 512)
	}
	return 0
}

// probe finds out what the filesystem answers: GETFSMAP at all (a query of
// one byte), XFS geometry (and with it whether the rmap names owners).
func probe(root int, major, minor uint32, fstype string) caps {
	var c caps
	err := getfsmap(root, encodeDev(major, minor), 0, 0, func(fsmapRecord) bool { return false })
	c.fsmap = err == nil
	if fstype == "xfs" {
		if g, err := xfsGeometry(root); err == nil {
			c.xfs = &g
			c.owners = c.fsmap && g.rmap()
		}
	}
	return c
}

// readSectors reads a block device's size in 512-byte sectors from sysfs.
func readSectors(sys string, major, minor uint32) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", major, minor), "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: device size %q", ErrMalformed, b)
	}
	return n, nil
}

// openDevice opens the block device read-only (buffered: ext4's metadata
// lives in the device's page cache, so reads see what the filesystem
// sees). It tries /dev/block/M:m, the mount's source, and the name sysfs
// gives, and checks the device number of what it opened. fs.mu is held.
func (fs *FS) openDevice() (*os.File, error) {
	if fs.devFile != nil {
		return fs.devFile, nil
	}
	cands := []string{fmt.Sprintf("/dev/block/%d:%d", fs.major, fs.minor), fs.mount.Source}
	if ue, err := os.ReadFile(filepath.Join(fs.opts.Sys, "dev", "block", fmt.Sprintf("%d:%d", fs.major, fs.minor), "uevent")); err == nil {
		for line := range strings.SplitSeq(string(ue), "\n") {
			if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
				cands = append(cands, "/dev/"+name)
			}
		}
	}
	for _, p := range cands {
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == fs.dev {
			fs.devFile = f
			return f, nil
		}
		f.Close()
	}
	return nil, fs.errorf("open device", errors.New("no device node for it"))
}

// Device returns the device's major and minor numbers.
func (fs *FS) Device() (major, minor uint32) { return fs.major, fs.minor }

// Mount returns the mount in use.
func (fs *FS) Mount() Mount {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.mount
}

// Prepare builds now what the first Lookup would otherwise build (the
// walk's index, or the names where GETFSMAP names owners) and starts the
// watch that keeps it current.
func (fs *FS) Prepare(ctx context.Context) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return ErrClosed
	}
	if err := fs.checkMount(); err != nil {
		return err
	}
	_, err := fs.current(ctx)
	return err
}

// Close stops the watch and releases what the FS holds. It does not wait
// for a Lookup in progress beyond that lookup's end.
func (fs *FS) Close() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return nil
	}
	fs.closed = true
	fs.reset()
	fs.table.close()
	return nil
}

// Info is what an FS knows of its filesystem, for diagnostics.
type Info struct {
	Mount      Mount
	FSType     string
	Method     string    // "getfsmap" (owners from reverse mapping) or "fiemap" (the walk's index)
	Watching   bool      // a fanotify watch keeps the index current
	WatchError error     // why not, when the watch could not be set
	Built      time.Time // when the tree was last walked (zero: not yet)
	Inodes     int       // inodes the names know
	Extents    int       // extents in the index (0 with "getfsmap")
	WalkErrors int       // entries the last walk could not read
}

// Info returns what the FS knows now.
func (fs *FS) Info() Info {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	in := Info{Mount: fs.mount, FSType: fs.mount.FSType, Method: "fiemap", Watching: fs.watch != nil, WatchError: fs.watchErr}
	if !fs.wantExtents() {
		in.Method = "getfsmap"
	}
	if st := fs.st; st != nil {
		in.Built, in.Inodes, in.WalkErrors = st.built, st.names.len(), st.walkErrs
		if st.ext != nil {
			in.Extents = st.ext.size()
		}
	}
	return in
}
