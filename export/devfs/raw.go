package devfs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// cacheTimeout is how long the kernel may keep entries and attributes.
// Nothing changes behind its back: renames and removals go through the
// kernel itself, additions drop negative entries, and a resize
// invalidates the attributes and has the kernel fetch them again.
const cacheTimeout = time.Hour

// The FUSE requests of the directory and its files, other than I/O
// (io.go). What is not here is go-fuse's default: ENOSYS.

// Init keeps nothing: fs.srv is set when NewServer returns.
func (fs *server) Init(*fuse.Server) {}

// Lookup finds a device file in the root.
func (fs *server) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if h.NodeId != rootID {
		return fuse.ENOTDIR
	}
	fs.mu.Lock()
	n := fs.byName[name]
	if n == nil {
		fs.mu.Unlock()
		return fuse.ENOENT
	}
	n.nlookup++
	out.NodeId = n.id
	out.Generation = 1
	fs.fillAttr(n, &out.Attr)
	fs.mu.Unlock()
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	return fuse.OK
}

// Forget drops the kernel's references to a node.
func (fs *server) Forget(nodeid, nlookup uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.byID[nodeid]
	if n == nil {
		return
	}
	n.nlookup -= min(nlookup, n.nlookup)
	fs.dropLocked(n)
}

// fillAttr describes n; fs.mu is held (read or write).
func (fs *FS) fillAttr(n *node, a *fuse.Attr) {
	size := n.size.Load()
	a.Ino = n.ino
	a.Size = uint64(size)
	a.Blocks = uint64(size+511) / 512
	a.Blksize = 4096
	a.Mode = syscall.S_IFREG | fs.opts.Mode
	a.Nlink = 1
	if n.gone.Load() {
		a.Nlink = 0
	}
	a.Owner = fuse.Owner{Uid: 0, Gid: fs.opts.Group}
	a.SetTimes(&n.atime, &n.mtime, &n.ctime)
}

func (fs *FS) fillRoot(a *fuse.Attr) {
	a.Ino = rootID
	a.Mode = syscall.S_IFDIR | 0o755
	a.Nlink = 2
	a.Blksize = 4096
	a.SetTimes(&fs.born, &fs.born, &fs.born)
}

// GetAttr describes the root or a device file.
func (fs *server) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	out.SetTimeout(cacheTimeout)
	if in.NodeId == rootID {
		fs.fillRoot(&out.Attr)
		return fuse.OK
	}
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := fs.byID[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	fs.fillAttr(n, &out.Attr)
	return fuse.OK
}

// SetAttr allows what a device node allows: times. The size is the
// device's: truncating to another size is refused with EPERM, except that
// open(O_TRUNC) (a truncation to 0 that names no open file) is ignored, as
// a block device ignores it, so that `: > file` and `dd of=file` work.
// Mode and owner are the daemon's: EPERM.
func (fs *server) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.NodeId == rootID {
		return fuse.EPERM
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.byID[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	v := in.Valid
	if v&fuse.FATTR_SIZE != 0 && int64(in.Size) != n.size.Load() {
		if in.Size != 0 || v&fuse.FATTR_FH != 0 {
			return fuse.EPERM
		}
		// open(O_TRUNC): ignored.
	}
	if v&fuse.FATTR_MODE != 0 && in.Mode&0o7777 != fs.opts.Mode {
		return fuse.EPERM
	}
	if v&fuse.FATTR_UID != 0 && in.Uid != 0 {
		return fuse.EPERM
	}
	if v&fuse.FATTR_GID != 0 && in.Gid != fs.opts.Group {
		return fuse.EPERM
	}
	now := time.Now()
	if v&fuse.FATTR_ATIME_NOW != 0 {
		n.atime = now
	} else if v&fuse.FATTR_ATIME != 0 {
		n.atime = time.Unix(int64(in.Atime), int64(in.Atimensec))
	}
	if v&fuse.FATTR_MTIME_NOW != 0 {
		n.mtime = now
	} else if v&fuse.FATTR_MTIME != 0 {
		n.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	}
	if v&(fuse.FATTR_ATIME|fuse.FATTR_MTIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0 {
		n.ctime = now
	}
	fs.fillAttr(n, &out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

// openFlags are the flags of every open device file: no page cache
// (direct I/O whatever the client asked), parallel direct writes (no inode
// lock around each), and no FLUSH request at each close (devfs has no
// data of its own to flush; fsync is what makes writes durable).
const openFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES | fuse.FOPEN_NOFLUSH

// Open opens a device file. Opens for writing of a read-only device fail
// with EROFS, except daxstack's own (OpenInternal).
func (fs *server) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	internal := fs.internalIntent(&in.Caller) != nil
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.byID[in.NodeId]
	if n == nil || n.gone.Load() {
		return fuse.ENOENT
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY && n.ro.Load() && !internal {
		return fuse.Status(syscall.EROFS)
	}
	fh := fs.nextFh
	fs.nextFh++
	fs.handles[fh] = &handle{n: n, internal: internal}
	n.opens++
	if !internal {
		n.users++
	}
	out.Fh = fh
	out.OpenFlags = openFlags
	return fuse.OK
}

// Release closes an open file.
func (fs *server) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h := fs.handles[in.Fh]
	if h == nil {
		return
	}
	delete(fs.handles, in.Fh)
	h.n.opens--
	if !h.internal {
		h.n.users--
	}
	fs.dropLocked(h.n)
}

// handle returns the open file fh.
func (fs *FS) handle(fh uint64) *handle {
	fs.mu.RLock()
	h := fs.handles[fh]
	fs.mu.RUnlock()
	return h
}

// OpenDir takes a listing of the root, which its ReadDir calls page
// through.
func (fs *server) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId != rootID {
		return fuse.ENOTDIR
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	list := []fuse.DirEntry{
		{Name: ".", Ino: rootID, Mode: syscall.S_IFDIR},
		{Name: "..", Ino: rootID, Mode: syscall.S_IFDIR},
	}
	for _, i := range fs.sortedLocked() {
		list = append(list, fuse.DirEntry{Name: i.name, Ino: i.ino, Mode: syscall.S_IFREG})
	}
	for i := range list {
		list[i].Off = uint64(i + 1)
	}
	fh := fs.nextFh
	fs.nextFh++
	fs.dirs[fh] = list
	out.Fh = fh
	return fuse.OK
}

// ReadDir returns the listing from in.Offset on.
func (fs *server) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, l *fuse.DirEntryList) fuse.Status {
	fs.mu.RLock()
	list := fs.dirs[in.Fh]
	fs.mu.RUnlock()
	for i := in.Offset; i < uint64(len(list)); i++ {
		if !l.AddDirEntry(list[i]) {
			break
		}
	}
	return fuse.OK
}

// ReleaseDir drops a listing.
func (fs *server) ReleaseDir(in *fuse.ReleaseIn) {
	fs.mu.Lock()
	delete(fs.dirs, in.Fh)
	fs.mu.Unlock()
}

// FsyncDir has nothing to do.
func (fs *server) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// StatFs describes an empty file system with long names.
func (fs *server) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	fs.mu.RLock()
	files := uint64(len(fs.byName))
	fs.mu.RUnlock()
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255, Files: files}
	return fuse.OK
}

// Rename is daxstack's own (Rename): others get EPERM.
func (fs *server) Rename(cancel <-chan struct{}, in *fuse.RenameIn, old, new string) fuse.Status {
	if fs.internalIntent(&in.Caller) == nil {
		return fuse.EPERM
	}
	if in.NodeId != rootID || in.Newdir != rootID {
		return fuse.EXDEV
	}
	const exchange = 1 << 1 // RENAME_EXCHANGE
	if in.Flags&exchange != 0 {
		return fuse.EINVAL
	}
	if !validName(new) {
		return fuse.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.byName[old]
	if n == nil {
		return fuse.ENOENT
	}
	if fs.byName[new] != nil {
		return fuse.Status(syscall.EEXIST)
	}
	fs.renameLocked(n, new)
	return fuse.OK
}

// Unlink is daxstack's own (Remove): others get EPERM. It refuses a file
// with users (EBUSY) unless the removal is forced.
func (fs *server) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	in := fs.internalIntent(&h.Caller)
	if in == nil {
		return fuse.EPERM
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.byName[name]
	if h.NodeId != rootID || n == nil {
		return fuse.ENOENT
	}
	if n.users > 0 && !in.force {
		return fuse.EBUSY
	}
	fs.unlinkLocked(n)
	return fuse.OK
}

// The directory holds device files only.

func (fs *server) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *server) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *server) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return fuse.EPERM
}

func (fs *server) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.EPERM
}

func (fs *server) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *server) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *FS) sortedLocked() []*node {
	out := make([]*node, 0, len(fs.byName))
	for _, n := range fs.byName {
		out = append(out, n)
	}
	sortNodes(out)
	return out
}
