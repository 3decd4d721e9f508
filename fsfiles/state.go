package fsfiles

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// state is what an FS knows of its filesystem's tree: the names of every
// inode and, unless GETFSMAP names owners, the extents of every file and
// directory.
type state struct {
	names    *names
	ext      *extentIndex // nil when only names are kept
	rootIno  uint64
	pending  map[uint64]struct{}     // data not placed yet at the last look: map again before trusting
	deep     map[uint64]struct{}     // ext4 files whose extent tree has blocks of its own
	unlinked map[uint64]struct{}     // lost their last name since the walk: open still, or gone?
	orphans  map[uint64]openRef      // unlinked but open (found through /proc)
	gone     map[uint64]string       // unlinked and closed (its blocks may not be freed yet): its last path
	lastPath map[uint64]string       // the path an unlinked inode had, until settled
	handles  map[fanHandle]uint64    // inode of handles seen, for those that cannot be opened any more
	trees    map[uint64]ext4TreeInfo // ext4 extent trees read, by inode
	built    time.Time
	walkErrs int
	files    int
}

// ext4TreeInfo is an ext4 file's extent-tree blocks (device sectors).
type ext4TreeInfo struct {
	blocks []uint64
}

// wantExtents reports whether lookups go through the walk's extents.
func (fs *FS) wantExtents() bool { return !fs.caps.owners || fs.opts.ForceWalk }

// current returns the state, brought up to date: built by a walk when
// there is none or the watch lost events (or there is no watch), and
// otherwise with every change the watch saw applied. fs.mu is held.
func (fs *FS) current(ctx context.Context) (*state, error) {
	if fs.st != nil && fs.watch != nil {
		dirty, dirents, lost := fs.watch.take()
		if !lost {
			if err := fs.apply(fs.st, dirty, dirents); err != nil {
				return nil, err
			}
			if err := fs.settle(fs.st); err != nil {
				return nil, err
			}
			return fs.st, nil
		}
		if fs.watch.broken() {
			fs.watch.close()
			fs.watch = nil
		}
	}
	if fs.watch == nil && !fs.opts.NoWatch {
		if w, err := watchFS(fs.mount.Point); err == nil {
			fs.watch = w
			fs.watchErr = nil
			go fs.tidy(w)
		} else {
			fs.watchErr = err
		}
	}
	// Whatever was known is stale now: should the walk fail, the next call
	// walks again rather than trust it.
	fs.st = nil
	if fs.watch != nil {
		fs.watch.take() // what came before the walk is in the walk
	}
	st, err := fs.build(ctx)
	if err != nil {
		return nil, err
	}
	fs.st = st
	return st, nil
}

// tidyEvery is how often the watch's backlog is looked at between
// lookups, and tidyBacklog how much of it is applied then rather than left
// to the next lookup.
const (
	tidyEvery   = time.Second
	tidyBacklog = 256
)

// tidy applies the changes the watch w keeps when they pile up between
// lookups (a tree copied in, a build), so that the next lookup does not
// pay for them all; a watch that lost events has the tree walked again
// here. It ends with the watch.
func (fs *FS) tidy(w *watcher) {
	t := time.NewTicker(tidyEvery)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if !w.pressing(tidyBacklog) {
			continue
		}
		fs.mu.Lock()
		if fs.watch == w && fs.st != nil && !fs.closed {
			_, _ = fs.current(context.Background())
		}
		fs.mu.Unlock()
	}
}

// build walks the tree. fs.mu is held.
func (fs *FS) build(ctx context.Context) (*state, error) {
	root, mntID, err := fs.openWalkRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		return nil, fs.errorf("walk", err)
	}
	w := &walker{ctx: ctx, root: root, rootIno: st.Ino, mntID: mntID, dev: fs.dev, extents: fs.wantExtents(),
		xfsDirs: fs.mount.FSType == "xfs"}
	if fs.caps.ext4 != nil {
		w.deepMin = 4 // the inode holds 4 extents; more need tree blocks
	}
	outs, err := w.run(fs.opts.Workers)
	if err != nil {
		return nil, fs.errorf("walk", err)
	}
	if w.unsupported.Load() {
		return nil, fs.errorf("walk", fmt.Errorf("%w: FIEMAP: %v", ErrUnsupported, unix.EOPNOTSUPP))
	}
	s := &state{rootIno: st.Ino, pending: map[uint64]struct{}{}, deep: map[uint64]struct{}{}, unlinked: map[uint64]struct{}{},
		orphans: map[uint64]openRef{}, gone: map[uint64]string{}, lastPath: map[uint64]string{}, handles: map[fanHandle]uint64{}, trees: map[uint64]ext4TreeInfo{}, built: time.Now()}
	n, nexts := 0, 0
	for _, o := range outs {
		n += len(o.entries)
		nexts += len(o.exts)
	}
	s.names = newNames(st.Ino, n)
	var exts []mapped
	if w.extents {
		exts = make([]mapped, 0, nexts)
	}
	for _, o := range outs {
		for _, e := range o.entries {
			s.names.add(e.parent, e.name, e.ino, e.typ)
		}
		exts = append(exts, o.exts...)
		for _, ino := range o.pending {
			s.pending[ino] = struct{}{}
		}
		for _, ino := range o.deep {
			s.deep[ino] = struct{}{}
		}
		s.walkErrs += o.errs
		s.files += o.files
	}
	if w.extents {
		s.ext = newExtentIndex(exts)
	}
	// Unlinked files still open are in no directory: find them in /proc.
	_ = scanOpen(fs.opts.Proc, fs.dev, func(r openRef) {
		if r.Nlink == 0 && r.Mode&unix.S_IFMT == unix.S_IFREG {
			if _, ok := s.orphans[r.Ino]; !ok {
				s.orphans[r.Ino] = r
			}
		}
	})
	if s.ext != nil {
		m := &mapper{}
		for ino, r := range s.orphans {
			fs.remapPath(s, m, ino, r.Via)
		}
	}
	return s, nil
}

// openWalkRoot opens the root of the tree to walk: a private clone of the
// mount (open_tree OPEN_TREE_CLONE) where that is allowed, which shows what
// other mounts hide and holds no mount busy, else the mount point itself.
// It returns the descriptor and the mount ID every directory of the walk
// must be on.
func (fs *FS) openWalkRoot() (int, uint64, error) {
	if fd, err := unix.OpenTree(unix.AT_FDCWD, fs.mount.Point, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC); err == nil {
		var stx unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID|unix.STATX_INO, &stx); err == nil &&
			unix.Mkdev(stx.Dev_major, stx.Dev_minor) == fs.dev {
			return fd, stx.Mnt_id, nil
		}
		unix.Close(fd)
	}
	fd, err := fs.openRoot()
	if err != nil {
		return -1, 0, err
	}
	return fd, uint64(fs.mount.ID), nil
}

// apply brings the state up to date with the events the watch kept:
// directory entries first (in order), then every changed file is mapped
// again. fs.mu is held.
func (fs *FS) apply(s *state, dirty map[fanHandle]struct{}, dirents []fanEvent) error {
	if len(dirty) == 0 && len(dirents) == 0 {
		return nil
	}
	root, err := fs.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	m := &mapper{}
	if dirty == nil {
		dirty = map[fanHandle]struct{}{}
	}
	changedDirs := map[fanHandle]struct{}{}
	for _, ev := range dirents {
		if ev.Mask&fanCreate != 0 && !ev.HasObj && ev.HasDir {
			// A watch without FAN_REPORT_TARGET_FID: the entry says.
			ev.Obj, ev.HasObj = fs.entryHandle(root, ev.Dir, ev.Name)
		}
		fs.applyDirent(s, root, ev)
		if ev.HasDir {
			changedDirs[ev.Dir] = struct{}{}
		}
		if ev.HasOld {
			changedDirs[ev.OldDir] = struct{}{}
		}
		if ev.HasObj && ev.Mask&fanCreate != 0 {
			dirty[ev.Obj] = struct{}{}
		}
	}
	if s.ext != nil {
		for h := range changedDirs {
			dirty[h] = struct{}{}
		}
		for h := range dirty {
			fs.remapHandle(s, root, m, h)
		}
	}
	return nil
}

// applyDirent applies one create, delete or rename to the names.
func (fs *FS) applyDirent(s *state, root int, ev fanEvent) {
	if !ev.HasDir {
		return
	}
	dir, _, ok := fs.handleIno(s, root, ev.Dir)
	if !ok {
		return
	}
	switch {
	case ev.Mask&fanRename != 0 && ev.HasOld:
		odir, _, ok := fs.handleIno(s, root, ev.OldDir)
		if !ok {
			return
		}
		ino := s.names.remove(odir, ev.OldName)
		typ, _ := s.names.typeOf(ino)
		if ev.HasObj {
			if i, t, ok := fs.handleIno(s, root, ev.Obj); ok {
				ino, typ = i, t
			}
		}
		if old := s.names.remove(dir, ev.Name); old != 0 && old != ino {
			s.unlinked[old] = struct{}{}
		}
		if ino != 0 {
			s.names.add(dir, ev.Name, ino, typ)
		}
	case ev.Mask&fanCreate != 0:
		if !ev.HasObj {
			return
		}
		if ino, typ, ok := fs.handleIno(s, root, ev.Obj); ok {
			s.names.add(dir, ev.Name, ino, typ)
			delete(s.unlinked, ino)
			delete(s.gone, ino)
		}
	case ev.Mask&fanDelete != 0:
		if ps := s.names.paths(s.names.kids[link{dir, ev.Name}], nil); len(ps) > 0 {
			s.lastPath[s.names.kids[link{dir, ev.Name}]] = ps[0]
		}
		if ino := s.names.remove(dir, ev.Name); ino != 0 {
			if nd := s.names.nodes[ino]; nd != nil && len(nd.links) == 0 {
				s.unlinked[ino] = struct{}{}
			}
		}
	}
}

// entryHandle returns the file handle of the entry name of the directory
// of handle dir, as it is now.
func (fs *FS) entryHandle(root int, dir fanHandle, name string) (fanHandle, bool) {
	dfd, err := unix.OpenByHandleAt(root, unix.NewFileHandle(dir.Type, []byte(dir.Bytes)), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return fanHandle{}, false
	}
	defer unix.Close(dfd)
	h, _, err := unix.NameToHandleAt(dfd, name, 0)
	if err != nil {
		return fanHandle{}, false
	}
	return fanHandle{Type: h.Type(), Bytes: string(h.Bytes())}, true
}

// handleIno returns the inode and type a handle names, opening it (O_PATH:
// nothing is read, no device is opened) or, for one that cannot be opened
// any more, from the handles seen before.
func (fs *FS) handleIno(s *state, root int, h fanHandle) (uint64, uint8, bool) {
	fd, err := unix.OpenByHandleAt(root, unix.NewFileHandle(h.Type, []byte(h.Bytes)), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		ino, ok := s.handles[h]
		typ, _ := s.names.typeOf(ino)
		return ino, typ, ok
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Dev != fs.dev {
		return 0, 0, false
	}
	if len(s.handles) > maxDirty {
		clear(s.handles)
	}
	s.handles[h] = st.Ino
	return st.Ino, modeType(st.Mode), true
}

// remapHandle maps the file or directory of handle h again.
func (fs *FS) remapHandle(s *state, root int, m *mapper, h fanHandle) {
	pfd, err := unix.OpenByHandleAt(root, unix.NewFileHandle(h.Type, []byte(h.Bytes)), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		if ino, ok := s.handles[h]; ok {
			if r, open := s.orphans[ino]; open {
				fs.remapPath(s, m, ino, r.Via) // unlinked but open: ext4 refuses its handle
			} else if nd := s.names.nodes[ino]; nd == nil || len(nd.links) == 0 {
				s.unlinked[ino] = struct{}{}
			}
		}
		return
	}
	defer unix.Close(pfd)
	fs.remapFd(s, m, pfd)
}

// remapPath maps again the file at path (a /proc link, or a path under the
// mount point), checking it is inode ino.
func (fs *FS) remapPath(s *state, m *mapper, ino uint64, path string) {
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if unix.Fstat(pfd, &st) != nil || st.Ino != ino || st.Dev != fs.dev {
		return
	}
	fs.remapFd(s, m, pfd)
}

// remapFd maps the regular file or directory that O_PATH descriptor pfd
// refers to, and records the result.
func (fs *FS) remapFd(s *state, m *mapper, pfd int) {
	var st unix.Stat_t
	if unix.Fstat(pfd, &st) != nil || st.Dev != fs.dev {
		return
	}
	typ := modeType(st.Mode)
	if typ != dtReg && typ != dtDir {
		return
	}
	// Reopen through /proc (a magic link: no O_NOFOLLOW); the type is
	// known, so no device or FIFO is opened.
	fd, err := reopen(pfd, openReopen)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var exts []fileExtent
	var pending bool
	var flags uint8
	if typ == dtDir {
		flags = xDir
		if fs.mount.FSType == "xfs" {
			exts, pending, err = m.getbmapx(fd, false)
		} else {
			exts, pending, err = m.fiemap(fd, 0)
		}
	} else {
		exts, pending, err = m.fiemap(fd, 0)
	}
	if err != nil {
		return
	}
	s.ext.replace(st.Ino, appendMapped(nil, exts, st.Ino, flags))
	if pending {
		s.pending[st.Ino] = struct{}{}
	} else {
		delete(s.pending, st.Ino)
	}
	delete(s.trees, st.Ino)
	if fs.caps.ext4 != nil && len(exts) > 4 {
		s.deep[st.Ino] = struct{}{}
	} else {
		delete(s.deep, st.Ino)
	}
}

// settle maps again the files whose data had no place at their last look
// (writeback places it without an event), and drops inodes that lost their
// last name and are no longer open. fs.mu is held.
func (fs *FS) settle(s *state) error {
	if len(s.pending) == 0 && len(s.unlinked) == 0 {
		return nil
	}
	m := &mapper{}
	for ino := range s.pending {
		if s.ext == nil {
			break
		}
		if r, ok := s.orphans[ino]; ok {
			fs.remapPath(s, m, ino, r.Via)
			continue
		}
		if ps := s.names.paths(ino, nil); len(ps) > 0 {
			fs.remapPath(s, m, ino, fs.mount.Point+"/"+ps[0])
		} else {
			delete(s.pending, ino)
		}
	}
	if len(s.unlinked) > 0 {
		open := map[uint64]openRef{}
		_ = scanOpen(fs.opts.Proc, fs.dev, func(r openRef) {
			if _, want := s.unlinked[r.Ino]; want && r.Mode&unix.S_IFMT == unix.S_IFREG {
				open[r.Ino] = r
			}
		})
		for ino := range s.unlinked {
			if nd := s.names.nodes[ino]; nd != nil && len(nd.links) > 0 {
				continue // linked again (a rename's target, a new link)
			}
			if r, ok := open[ino]; ok {
				s.orphans[ino] = r
				continue
			}
			delete(s.orphans, ino)
			if len(s.gone) > maxDirty {
				clear(s.gone)
			}
			s.gone[ino] = s.lastPath[ino]
			if s.ext != nil {
				s.ext.replace(ino, nil)
			}
			s.names.forget(ino)
			delete(s.pending, ino)
			delete(s.deep, ino)
		}
		clear(s.unlinked)
		clear(s.lastPath)
	}
	return nil
}
