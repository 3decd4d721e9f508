package devfs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/linux"
)

// Options configure a mount.
type Options struct {
	// Group owns every device file (owner root, mode Mode); the kernel
	// enforces it (default_permissions). 0 is root's group.
	Group uint32
	// Mode is the permission bits of the files; 0 means 0660.
	Mode uint32
	// MaxWrite is the largest READ and WRITE request the kernel sends;
	// 0 means DefaultMaxWrite.
	MaxWrite int
	// MaxBackground is how many asynchronous requests (the direct I/O of
	// a loop device) the kernel keeps in flight; 0 means
	// DefaultMaxBackground.
	MaxBackground int
	// SyncDIO turns asynchronous direct I/O (FUSE_ASYNC_DIO) off, for
	// measuring it: the requests of one direct-I/O read or write then
	// reach the server one at a time.
	SyncDIO bool
	// Logger gets go-fuse's diagnostics; nil means the log package's.
	Logger *log.Logger
	// Debug logs every FUSE request.
	Debug bool
}

// Defaults of Options. MaxWrite is the kernel's largest (256 pages): a
// loop's 1 MiB request is one FUSE request, not 1020 KiB and 4 KiB. (go-fuse
// logs a warning on every 1 MiB read when it may splice; devfs never
// splices.)
const (
	DefaultMaxWrite      = 1 << 20
	DefaultMaxBackground = 128
	DefaultMode          = 0o660
)

// rootID is the FUSE node id of the mount's root directory.
const rootID = fuse.FUSE_ROOT_ID

// FS is a mounted directory of device files. Its methods are safe for
// concurrent use.
type FS struct {
	dir  string
	opts Options
	srv  *fuse.Server
	dev  uint64 // st_dev of the mount
	born time.Time

	mu      sync.RWMutex
	byName  map[string]*node
	byID    map[uint64]*node // FUSE node ids, never reused
	byIno   map[uint64]*node // st_ino
	handles map[uint64]*handle
	dirs    map[uint64][]fuse.DirEntry // open directory listings
	nextID  uint64
	nextIno uint64
	nextFh  uint64
	closed  bool

	// Threads of this process whose FUSE requests are daxstack's own
	// plumbing, and what each may do (see asInternal).
	imu      sync.Mutex
	internal map[uint32]*intent

	served sync.WaitGroup
}

// Mount mounts an empty directory of device files on dir (created if
// missing) and serves it until Close. If dir holds a FUSE mount whose
// server is gone (a dead daemon's), it is unmounted first (lazily: a loop
// device of the dead daemon may still hold a file in it); a live mount on
// dir is refused with ErrMounted.
func Mount(dir string, o Options) (*FS, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if o.Mode == 0 {
		o.Mode = DefaultMode
	}
	o.Mode &= 0o777
	if o.MaxWrite == 0 {
		o.MaxWrite = DefaultMaxWrite
	}
	if o.MaxBackground == 0 {
		o.MaxBackground = DefaultMaxBackground
	}
	if err := clearDeadMount(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fs := &FS{
		dir:      dir,
		opts:     o,
		born:     time.Now(),
		byName:   map[string]*node{},
		byID:     map[uint64]*node{},
		byIno:    map[uint64]*node{},
		handles:  map[uint64]*handle{},
		dirs:     map[uint64][]fuse.DirEntry{},
		nextID:   rootID + 1,
		nextIno:  rootID + 1,
		nextFh:   1,
		internal: map[uint32]*intent{},
	}
	mo := &fuse.MountOptions{
		AllowOther:         true,
		Options:            []string{"default_permissions"},
		FsName:             "daxstack",
		Name:               "daxstack",
		DirectMount:        os.Geteuid() == 0,
		DirectMountStrict:  os.Geteuid() == 0,
		DirectMountFlags:   syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC,
		MaxWrite:           o.MaxWrite,
		MaxBackground:      o.MaxBackground,
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		// Replies carry the data read (no file descriptor to splice from);
		// go-fuse would still set up a pipe for each and log when a 1 MiB
		// reply does not fit.
		DisableSplice: true,
		// Async direct I/O: the requests of one direct-I/O read or write
		// (a loop's) go to the server in parallel, not one at a time.
		ExtraCapabilities: asyncDIO(o.SyncDIO),
		Logger:            o.Logger,
		Debug:             o.Debug,
	}
	srv, err := fuse.NewServer(&server{RawFileSystem: fuse.NewDefaultRawFileSystem(), FS: fs}, dir, mo)
	if err != nil {
		return nil, fmt.Errorf("mount device files on %s: %w", dir, err)
	}
	fs.srv = srv
	fs.served.Add(1)
	go func() {
		defer fs.served.Done()
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("mount device files on %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		fs.Close()
		return nil, fmt.Errorf("mount device files on %s: %w", dir, err)
	}
	fs.dev = st.Dev
	return fs, nil
}

func asyncDIO(off bool) uint64 {
	if off {
		return 0
	}
	return fuse.CAP_ASYNC_DIO
}

// clearDeadMount unmounts a FUSE mount on dir whose server is gone, and
// refuses a live mount there.
func clearDeadMount(dir string) error {
	m, ok, err := linux.MountAt(dir)
	if err != nil || !ok {
		return err
	}
	// statfs always asks the server (a stat may be answered from the
	// kernel's cache); a dead connection answers ENOTCONN.
	var sfs unix.Statfs_t
	err = unix.Statfs(dir, &sfs)
	if err == nil {
		return fmt.Errorf("%s (%s, %s): %w", dir, m.FSType, m.Source, ErrMounted)
	}
	if !errors.Is(err, unix.ENOTCONN) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount the dead mount on %s: %w", dir, err)
	}
	return nil
}

// Dir returns the mount point.
func (fs *FS) Dir() string { return fs.dir }

// Dev returns the device number of the mount (st_dev of its files).
func (fs *FS) Dev() uint64 { return fs.dev }

// Path returns the path of the device file name (whether or not it
// exists).
func (fs *FS) Path(name string) string { return filepath.Join(fs.dir, name) }

// Settings reports what the kernel and go-fuse agreed at mount time.
type Settings struct {
	Protocol      string // FUSE protocol version, "7.45"
	MaxWrite      int
	MaxBackground int
	MaxReadAhead  uint32
	AsyncDIO      bool // asynchronous direct I/O agreed
	AsyncRead     bool
	ParallelDirs  bool
}

// Settings returns the negotiated parameters.
func (fs *FS) Settings() Settings {
	k := fs.srv.KernelSettings()
	return Settings{
		Protocol:      fmt.Sprintf("%d.%d", k.Major, k.Minor),
		MaxWrite:      fs.opts.MaxWrite,
		MaxBackground: fs.opts.MaxBackground,
		MaxReadAhead:  k.MaxReadAhead,
		AsyncDIO:      !fs.opts.SyncDIO && k.Flags64()&fuse.CAP_ASYNC_DIO != 0,
		AsyncRead:     k.Flags64()&fuse.CAP_ASYNC_READ != 0,
		ParallelDirs:  k.Flags64()&fuse.CAP_PARALLEL_DIROPS != 0,
	}
}

// Close unmounts the directory and stops serving. Loop devices over the
// files must be detached first (export/blockdev does); if something still
// holds a file open (a loop device a filesystem is mounted on), Close
// detaches the mount lazily and aborts the FUSE connection: every later
// I/O on such files fails with EIO (ENOTCONN), as after a crash of the
// daemon, and the filesystem on top must be unmounted and mounted again
// on a new export. Close then returns an error matching ErrBusy, having
// done all that.
func (fs *FS) Close() error {
	fs.mu.Lock()
	if fs.closed {
		fs.mu.Unlock()
		return nil
	}
	fs.closed = true
	fs.mu.Unlock()
	err := fs.srv.Unmount()
	if err != nil {
		// Busy. Detach the mount from the tree, then end the connection.
		if derr := unix.Unmount(fs.dir, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %v; lazily: %w", fs.dir, err, derr)
		}
		if aerr := abortConnection(fs.dev); aerr != nil {
			return fmt.Errorf("unmount %s: %v; abort the connection: %w", fs.dir, err, aerr)
		}
		fs.served.Wait()
		return fmt.Errorf("%s: files were still open (%v): detached lazily, connection aborted: %w", fs.dir, err, ErrBusy)
	}
	fs.served.Wait()
	return nil
}

// abortConnection aborts the FUSE connection of the mount with device
// number dev through fusectl (mounting fusectl if it is not).
func abortConnection(dev uint64) error {
	const ctl = "/sys/fs/fuse/connections"
	if _, ok, err := linux.MountAt(ctl); err == nil && !ok {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	// The directory is named by the kernel's dev_t (MAJOR << 20 | MINOR).
	id := uint64(unix.Major(dev))<<20 | uint64(unix.Minor(dev))
	return os.WriteFile(fmt.Sprintf("%s/%d/abort", ctl, id), []byte("1"), 0)
}

// intent is what a thread in asInternal is allowed.
type intent struct {
	force bool // unlink even if the file has users
}

// asInternal runs fn on a thread of its own whose FUSE requests devfs
// knows for daxstack's own: opens from it are not users, and renames and
// unlinks from it are allowed (as in says). The kernel names the calling
// thread in each request (its id in the mount's pid namespace, which is
// this process's); no other process can have that thread id while fn
// runs.
func (fs *FS) asInternal(in intent, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := uint32(unix.Gettid())
	fs.imu.Lock()
	fs.internal[tid] = &in
	fs.imu.Unlock()
	defer func() {
		fs.imu.Lock()
		delete(fs.internal, tid)
		fs.imu.Unlock()
	}()
	return fn()
}

// internalIntent returns the intent of the thread a request came from, or
// nil if it is not in asInternal.
func (fs *FS) internalIntent(c *fuse.Caller) *intent {
	if c.Pid == 0 {
		return nil // a process outside the mount's pid namespace
	}
	fs.imu.Lock()
	defer fs.imu.Unlock()
	return fs.internal[c.Pid]
}

// node is one device file.
type node struct {
	id   uint64 // FUSE node id
	ino  uint64
	dev  Device
	fua  FUAWriter  // dev's, or nil
	lend ReadLender // dev's, or nil

	size atomic.Int64
	ro   atomic.Bool
	gone atomic.Bool // removed: I/O fails with EIO

	// Guarded by FS.mu.
	name         string
	nlookup      uint64
	opens, users int
	atime, mtime time.Time
	ctime        time.Time
}

// handle is one open file.
type handle struct {
	n        *node
	internal bool
}

// server is the FUSE side of an FS: the requests the kernel sends (raw.go,
// io.go). The default file system answers ENOSYS to what devfs does not
// do.
type server struct {
	fuse.RawFileSystem
	*FS
}

func (fs *server) String() string { return "daxstack" }
