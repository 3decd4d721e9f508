package devfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Add makes a device file name of d with attributes a.
func (fs *FS) Add(name string, d Device, a Attr) error {
	if !validName(name) {
		return fmt.Errorf("device file %q: %w", name, ErrInvalid)
	}
	if a.Size < 0 {
		return fmt.Errorf("device file %s: size %d: %w", name, a.Size, ErrInvalid)
	}
	if a.Ino == rootID {
		return fmt.Errorf("device file %s: inode number %d is the root's: %w", name, a.Ino, ErrInvalid)
	}
	fs.mu.Lock()
	if fs.closed {
		fs.mu.Unlock()
		return ErrClosed
	}
	if _, ok := fs.byName[name]; ok {
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: %w", name, ErrExists)
	}
	ino := a.Ino
	if ino == 0 {
		for fs.byIno[fs.nextIno] != nil {
			fs.nextIno++
		}
		ino = fs.nextIno
		fs.nextIno++
	} else if o := fs.byIno[ino]; o != nil {
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: inode number %d is %s's: %w", name, ino, o.name, ErrExists)
	}
	now := time.Now()
	n := &node{id: fs.nextID, ino: ino, dev: d, name: name, atime: now, mtime: now, ctime: now}
	fs.nextID++
	n.fua, _ = d.(FUAWriter)
	n.lend, _ = d.(ReadLender)
	n.size.Store(a.Size)
	n.ro.Store(a.ReadOnly)
	fs.byName[name] = n
	fs.byID[n.id] = n
	fs.byIno[ino] = n
	fs.mu.Unlock()
	// Drop a negative entry the kernel may hold for the name.
	fs.srv.EntryNotify(rootID, name)
	return nil
}

// Remove removes the device file name; with users (opens that are not
// daxstack's own) it refuses with a *BusyError unless force. Files still
// open afterwards fail every I/O with EIO. Remove does not wait for
// requests already in the Device: one parked in a suspended Device returns
// when the Device lets it, so a Device must tolerate calls after the
// daemon has closed it (and fail them).
func (fs *FS) Remove(name string, force bool) error {
	if _, err := fs.lookup(name); err != nil {
		return err
	}
	// Through the kernel, so that its dentry is deleted as by unlink(2):
	// the Unlink handler does the rest.
	err := fs.asInternal(intent{force: force}, func() error { return unix.Unlink(fs.Path(name)) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		u, _ := fs.Users(name)
		return &BusyError{Name: name, Users: u}
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	// The kernel path is gone (the connection was aborted): remove it
	// here.
	fs.mu.Lock()
	n := fs.byName[name]
	if n == nil {
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	if n.users > 0 && !force {
		fs.mu.Unlock()
		return &BusyError{Name: name, Users: n.users}
	}
	fs.unlinkLocked(n)
	fs.mu.Unlock()
	return nil
}

// unlinkLocked takes n out of the directory; fs.mu is held.
func (fs *FS) unlinkLocked(n *node) {
	n.gone.Store(true)
	delete(fs.byName, n.name)
	delete(fs.byIno, n.ino)
	n.ctime = time.Now()
	fs.dropLocked(n)
}

// dropLocked forgets a removed node the kernel no longer refers to.
func (fs *FS) dropLocked(n *node) {
	if n.gone.Load() && n.nlookup == 0 && n.opens == 0 {
		delete(fs.byID, n.id)
	}
}

// Rename renames the device file old to new; the inode number, the open
// files and a loop device over it stay (the kernel moves its dentry, so a
// loop's backing_file shows the new name).
func (fs *FS) Rename(old, new string) error {
	if !validName(new) {
		return fmt.Errorf("device file %q: %w", new, ErrInvalid)
	}
	if _, err := fs.lookup(old); err != nil {
		return err
	}
	if old == new {
		return nil
	}
	err := fs.asInternal(intent{}, func() error {
		return unix.Renameat2(unix.AT_FDCWD, fs.Path(old), unix.AT_FDCWD, fs.Path(new), unix.RENAME_NOREPLACE)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("device file %s: %w", new, ErrExists)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("device file %s: %w", old, ErrNotFound)
	}
	fs.mu.Lock()
	n := fs.byName[old]
	switch {
	case n == nil:
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: %w", old, ErrNotFound)
	case fs.byName[new] != nil:
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: %w", new, ErrExists)
	}
	fs.renameLocked(n, new)
	fs.mu.Unlock()
	fs.srv.EntryNotify(rootID, old)
	fs.srv.EntryNotify(rootID, new)
	return nil
}

func (fs *FS) renameLocked(n *node, new string) {
	delete(fs.byName, n.name)
	n.name = new
	fs.byName[new] = n
	n.ctime = time.Now()
}

// Resize changes the size of the device file. When Resize returns, the
// kernel has the new size (a stat shows it, and a loop device over the
// file takes it at LOOP_SET_CAPACITY).
func (fs *FS) Resize(name string, size int64) error {
	if size < 0 {
		return fmt.Errorf("device file %s: size %d: %w", name, size, ErrInvalid)
	}
	fs.mu.Lock()
	n := fs.byName[name]
	if n == nil {
		fs.mu.Unlock()
		return fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	n.size.Store(size)
	now := time.Now()
	n.mtime, n.ctime = now, now
	id := n.id
	fs.mu.Unlock()
	// Invalidate the kernel's attributes (and any pages of private
	// mappings), then have it fetch them: a loop's direct I/O is bounded
	// by the size the kernel holds.
	fs.srv.InodeNotify(id, 0, 0)
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, fs.Path(name), unix.AT_STATX_FORCE_SYNC, unix.STATX_SIZE, &stx)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("device file %s: refresh the kernel's size: %w", name, err)
	}
	return nil
}

// SetReadOnly makes the device file refuse writes (EROFS), or take them
// again. Files open for writing stay open.
func (fs *FS) SetReadOnly(name string, ro bool) error {
	n, err := fs.lookup(name)
	if err != nil {
		return err
	}
	n.ro.Store(ro)
	return nil
}

// Users returns how many opens of the device file are clients' (not
// daxstack's own plumbing).
func (fs *FS) Users(name string) (int, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := fs.byName[name]
	if n == nil {
		return 0, fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	return n.users, nil
}

// Lookup returns the device file name.
func (fs *FS) Lookup(name string) (Info, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := fs.byName[name]
	if n == nil {
		return Info{}, fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	return n.infoLocked(), nil
}

// List returns every device file, by name.
func (fs *FS) List() []Info {
	fs.mu.RLock()
	out := make([]Info, 0, len(fs.byName))
	for _, n := range fs.byName {
		out = append(out, n.infoLocked())
	}
	fs.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (n *node) infoLocked() Info {
	return Info{
		Name:  n.name,
		Attr:  Attr{Size: n.size.Load(), ReadOnly: n.ro.Load(), Ino: n.ino},
		Users: n.users,
		Opens: n.opens,
	}
}

func (fs *FS) lookup(name string) (*node, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if fs.closed {
		return nil, ErrClosed
	}
	n := fs.byName[name]
	if n == nil {
		return nil, fmt.Errorf("device file %s: %w", name, ErrNotFound)
	}
	return n, nil
}

// OpenInternal opens the device file name for daxstack's own plumbing (the
// file a loop device is bound to): the open is not a user of the device,
// and it may be for writing even when the device is read-only (writes are
// still refused while it is).
func (fs *FS) OpenInternal(name string, flag int) (*os.File, error) {
	if _, err := fs.lookup(name); err != nil {
		return nil, err
	}
	var f *os.File
	err := fs.asInternal(intent{}, func() error {
		var err error
		f, err = os.OpenFile(fs.Path(name), flag|unix.O_CLOEXEC, 0)
		return err
	})
	return f, err
}

// Resolve tells whether path names one of the device files: a path in the
// mount, or any path whose file is one of them (a bind mount, a symlink).
// It returns the device file's name.
func (fs *FS) Resolve(path string) (string, bool) {
	if filepath.IsAbs(path) {
		clean := filepath.Clean(path)
		if filepath.Dir(clean) == fs.dir {
			fs.mu.RLock()
			n := fs.byName[filepath.Base(clean)]
			fs.mu.RUnlock()
			if n != nil {
				return n.name, true
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Dev != fs.dev {
		return "", false
	}
	return fs.ResolveIno(st.Ino)
}

// ResolveIno returns the name of the device file with inode number ino.
func (fs *FS) ResolveIno(ino uint64) (string, bool) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if n := fs.byIno[ino]; n != nil {
		return n.name, true
	}
	return "", false
}
