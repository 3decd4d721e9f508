package fsfiles

import (
	"context"
	"path"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// entryRec is one directory entry found by a walk.
type entryRec struct {
	parent uint64
	name   string
	ino    uint64
	typ    uint8
}

// walkOut is what one walker goroutine found.
type walkOut struct {
	entries []entryRec
	exts    []mapped
	pending []uint64 // inodes with data not yet placed (delayed allocation)
	deep    []uint64 // inodes with more extents than fit in the inode (ext4: extent-tree blocks)
	errs    int      // entries that could not be read (gone, refused)
	files   int
}

// walker walks the tree of one filesystem from an open root directory,
// recording every name and, when extents is set, every file's and
// directory's extents. Directories are shared between goroutines through
// a stack; each goroutine keeps what it finds and the results are merged
// at the end.
type walker struct {
	ctx     context.Context
	root    int
	rootIno uint64
	mntID   uint64
	dev     uint64
	extents bool
	xfsDirs bool // map directories with GETBMAPX (XFS has no FIEMAP for them)
	deepMin int  // record files with more extents than this (0: do not)

	unsupported atomic.Bool // FIEMAP is not answered for regular files

	mu     sync.Mutex
	cond   *sync.Cond
	stack  []dirJob
	active int
	err    error

	claims [64]claimShard
}

type dirJob struct {
	rel string
	ino uint64
}

type claimShard struct {
	sync.Mutex
	m map[uint64]struct{}
}

// claim reports whether ino is seen for the first time (hard links name
// one inode several times; it is mapped once).
func (w *walker) claim(ino uint64) bool {
	s := &w.claims[ino%uint64(len(w.claims))]
	s.Lock()
	defer s.Unlock()
	if s.m == nil {
		s.m = map[uint64]struct{}{}
	}
	if _, ok := s.m[ino]; ok {
		return false
	}
	s.m[ino] = struct{}{}
	return true
}

// run walks the tree with up to workers goroutines (0: GOMAXPROCS).
func (w *walker) run(workers int) ([]walkOut, error) {
	if workers <= 0 {
		workers = max(2, runtime.GOMAXPROCS(0))
	}
	w.cond = sync.NewCond(&w.mu)
	w.stack = []dirJob{{rel: ".", ino: w.rootIno}}
	outs := make([]walkOut, workers)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work(&outs[i])
		}()
	}
	wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	return outs, nil
}

func (w *walker) pop() (dirJob, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.stack) == 0 && w.active > 0 && w.err == nil {
		w.cond.Wait()
	}
	if len(w.stack) == 0 || w.err != nil {
		w.cond.Broadcast()
		return dirJob{}, false
	}
	j := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	w.active++
	return j, true
}

func (w *walker) push(jobs []dirJob) {
	if len(jobs) == 0 {
		return
	}
	w.mu.Lock()
	w.stack = append(w.stack, jobs...)
	w.mu.Unlock()
	w.cond.Broadcast()
}

func (w *walker) finish(err error) {
	w.mu.Lock()
	w.active--
	if err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.cond.Broadcast()
}

func (w *walker) work(out *walkOut) {
	m := &mapper{}
	buf := make([]byte, 64<<10)
	var kids []dirJob
	for {
		j, ok := w.pop()
		if !ok {
			return
		}
		var err error
		if err = w.ctx.Err(); err == nil {
			kids, err = w.dir(j, m, buf, kids[:0], out)
		}
		w.push(kids)
		w.finish(err)
	}
}

const (
	openDir  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME
	openFile = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK | unix.O_NOATIME
	// openReopen reopens a descriptor through /proc/self/fd/N.
	openReopen = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK | unix.O_NOATIME
)

// reopen opens again, with flags, the file an O_PATH descriptor refers
// to, through its /proc/self/fd link (a magic link: followed although
// the path was opened with O_NOFOLLOW).
func reopen(pfd int, flags int) (int, error) {
	var b [32]byte
	p := append(append(b[:0], "/proc/self/fd/"...), strconv.Itoa(pfd)...)
	return openat(unix.AT_FDCWD, string(p), flags)
}

// openat opens name under dir, dropping O_NOATIME when it is refused (it
// needs ownership or CAP_FOWNER).
func openat(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EPERM && flags&unix.O_NOATIME != 0:
			flags &^= unix.O_NOATIME
			continue
		}
		return fd, err
	}
}

// dir reads one directory: its entries, its own blocks, its files'
// extents; it returns the subdirectories to walk. Only errors that end the
// walk are returned: an entry gone or refused is counted in out.errs.
func (w *walker) dir(j dirJob, m *mapper, buf []byte, kids []dirJob, out *walkOut) ([]dirJob, error) {
	fd, err := openat(w.root, j.rel, openDir)
	if err != nil {
		if j.ino == w.rootIno {
			return kids, err
		}
		out.errs++
		return kids, nil
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		out.errs++
		return kids, nil
	}
	if stx.Mnt_id != w.mntID || stx.Ino != j.ino || unix.Mkdev(stx.Dev_major, stx.Dev_minor) != w.dev {
		return kids, nil // another mount sits here (or the entry changed): not this tree
	}
	if w.extents {
		var exts []fileExtent
		var pending bool
		if w.xfsDirs {
			exts, pending, err = m.getbmapx(fd, false)
		} else {
			exts, pending, err = m.fiemap(fd, 0)
		}
		if err == nil {
			out.exts = appendMapped(out.exts, exts, j.ino, xDir)
			if pending {
				out.pending = append(out.pending, j.ino)
			}
		}
	}
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			out.errs++
			break
		}
		if n <= 0 {
			break
		}
		var perr error
		perr = parseDirents(buf[:n], func(d dirent) {
			typ := d.Type
			if typ == dtUnknown {
				var st unix.Stat_t
				if unix.Fstatat(fd, d.Name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					out.errs++
					return
				}
				typ = modeType(st.Mode)
			}
			out.entries = append(out.entries, entryRec{parent: j.ino, name: d.Name, ino: d.Ino, typ: typ})
			switch {
			case typ == dtDir:
				kids = append(kids, dirJob{rel: path.Join(j.rel, d.Name), ino: d.Ino})
			case typ == dtReg && w.extents && w.claim(d.Ino):
				w.file(fd, d, m, out)
			}
		})
		if perr != nil {
			return kids, perr
		}
	}
	return kids, nil
}

// file maps one regular file named d in directory dirfd.
//
// The name is opened O_PATH first and reopened for reading only once it
// is known to be the regular file listed: between the listing and the
// open anyone who may write the directory can put a device or a FIFO
// there, and opening a device can act on it (a tape rewinds).
func (w *walker) file(dirfd int, d dirent, m *mapper, out *walkOut) {
	pfd, err := openat(dirfd, d.Name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		out.errs++
		return
	}
	var st unix.Stat_t
	if unix.Fstat(pfd, &st) != nil || st.Ino != d.Ino || st.Dev != w.dev || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(pfd)
		return // replaced since it was listed, or something mounted over it
	}
	if st.Blocks == 0 {
		// Nothing allocated, not even delayed (st_blocks counts delayed
		// allocation on ext4 and XFS): nothing to map.
		unix.Close(pfd)
		out.files++
		return
	}
	fd, err := reopen(pfd, openReopen)
	unix.Close(pfd)
	if err != nil {
		out.errs++
		return
	}
	defer unix.Close(fd)
	out.files++
	exts, pending, err := m.fiemap(fd, 0)
	if err != nil {
		if err == unix.EOPNOTSUPP || err == unix.ENOTTY {
			w.unsupported.Store(true)
		}
		out.errs++
		return
	}
	out.exts = appendMapped(out.exts, exts, d.Ino, 0)
	if pending {
		out.pending = append(out.pending, d.Ino)
	}
	if w.deepMin > 0 && len(exts) > w.deepMin {
		out.deep = append(out.deep, d.Ino)
	}
}

// appendMapped converts a file's extents that have a place on the device
// to sectors.
func appendMapped(dst []mapped, exts []fileExtent, ino uint64, flags uint8) []mapped {
	for _, e := range exts {
		if !e.located() {
			continue
		}
		f := flags
		if e.Flags&fiemapExtentUnwritten != 0 {
			f |= xUnwritten
		}
		if e.Flags&fiemapExtentShared != 0 {
			f |= xShared
		}
		// Block-mapped filesystems place extents on whole sectors; one
		// that is not (or that lies past any device) is not ours to map.
		if e.Physical%512 != 0 || e.Length%512 != 0 || e.Logical%512 != 0 || e.Physical/512+e.Length/512 > extent.MaxSector {
			continue
		}
		dst = append(dst, mapped{Start: e.Physical / 512, Len: e.Length / 512, Logical: e.Logical, Ino: ino, Flags: f})
	}
	return dst
}

// modeType is the d_type of a stat mode.
func modeType(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return dtDir
	case unix.S_IFREG:
		return dtReg
	case unix.S_IFLNK:
		return dtLnk
	}
	return 1 // DT_FIFO and the others: no blocks of their own
}
