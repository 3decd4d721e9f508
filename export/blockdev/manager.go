package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/linux"
	"github.com/daxstack/daxstack/internal/errno"
)

// Errors; each also matches the errno shown.
var (
	// ErrNotFound: no export by that name.
	ErrNotFound = errno.New("no block device for that device", syscall.ENXIO)
	// ErrExists: the device has a block device already.
	ErrExists = errno.New("device has a block device already", syscall.EEXIST)
	// ErrInvalid: a bad option.
	ErrInvalid = errno.New("invalid argument", syscall.EINVAL)
	// ErrBusy: the block device is in use (see BusyError).
	ErrBusy = errno.New("block device is in use", syscall.EBUSY)
	// ErrLinkTaken: a link name is held by something not daxstack's (see
	// LinkError).
	ErrLinkTaken = errno.New("link name is taken", syscall.EEXIST)
)

// Defaults of Options.
const (
	DefaultLinkDir   = "/dev/daxstack"
	DefaultMapperDir = "/dev/mapper"
	// MapperControl is device-mapper's control node: where it exists the
	// kernel has device-mapper, and MapperAuto makes no links.
	MapperControl = "/dev/mapper/control"
)

// Options configure a Manager.
type Options struct {
	// LinkDir holds a link NAME -> /dev/loopN per export; "" means
	// DefaultLinkDir.
	LinkDir string
	// MapperDir is where MapperLinks puts its links; "" means
	// DefaultMapperDir.
	MapperDir string
	// MapperLinks says whether to link MapperDir/NAME too.
	MapperLinks MapperMode
}

func (o Options) withDefaults() Options {
	if o.LinkDir == "" {
		o.LinkDir = DefaultLinkDir
	}
	if o.MapperDir == "" {
		o.MapperDir = DefaultMapperDir
	}
	return o
}

// mapperWanted resolves MapperLinks.
func (o Options) mapperWanted() bool {
	switch o.MapperLinks {
	case MapperOn:
		return true
	case MapperOff:
		return false
	}
	_, err := os.Stat(MapperControl)
	return errors.Is(err, os.ErrNotExist)
}

// Export is one device's block device.
type Export struct {
	Name     string
	Loop     linux.Loop
	Links    []string // the links made, LinkDir's first
	ReadOnly bool
	Claimed  bool   // held open with O_EXCL (Claim)
	Frozen   string // the mount point Freeze froze, if any
}

// export is an Export and what it holds.
type export struct {
	Export
	claim *os.File
}

// Manager owns the block devices of one devfs mount.
type Manager struct {
	fs     *devfs.FS
	o      Options
	mapper bool
	tag    string // the prefix of every Tag: "daxstack:" + mount dir + "/"

	mu      sync.Mutex // serialises changes
	idx     sync.RWMutex
	byName  map[string]*export // guarded by idx (writes also hold mu)
	byDev   map[linux.Dev]*export
	created []string // directories New made, removed by Close if empty
}

// New returns a Manager for the device files of fs: it makes LinkDir (and
// MapperDir when needed) if missing, and refuses ones that others can
// write to.
func New(fs *devfs.FS, o Options) (*Manager, error) {
	o = o.withDefaults()
	if !filepath.IsAbs(o.LinkDir) || !filepath.IsAbs(o.MapperDir) {
		return nil, fmt.Errorf("link directories must be absolute (%q, %q): %w", o.LinkDir, o.MapperDir, ErrInvalid)
	}
	m := &Manager{
		fs:     fs,
		o:      o,
		mapper: o.mapperWanted(),
		tag:    tagPrefix(fs.Dir()),
		byName: map[string]*export{},
		byDev:  map[linux.Dev]*export{},
	}
	dirs := []string{o.LinkDir}
	if m.mapper {
		dirs = append(dirs, o.MapperDir)
	}
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
			m.created = append(m.created, d)
			continue
		}
		if err != nil {
			return nil, err
		}
		// Links are made and removed by name: in a directory others can
		// write to, someone could swap a name between the check and the
		// change.
		if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
			return nil, fmt.Errorf("link directory %s must be a directory only its owner can write to (mode %v): %w", d, fi.Mode(), ErrInvalid)
		}
	}
	return m, nil
}

// MapperLinks reports whether the Manager makes MapperDir links.
func (m *Manager) MapperLinks() bool { return m.mapper }

// tagPrefix is what every loop of a devfs mount at dir carries in
// lo_file_name (cut to what the kernel keeps).
func tagPrefix(dir string) string {
	t := "daxstack:" + filepath.Clean(dir) + "/"
	if len(t) > linux.TagSize {
		t = t[:linux.TagSize]
	}
	return t
}

func (m *Manager) tagOf(name string) string { return m.tag + name }

// leftover reports a loop made over this mount's files by a daemon that is
// gone: ours by its tag, and not one of the live exports.
func (m *Manager) leftover(li linux.LoopInfo) bool {
	if !strings.HasPrefix(li.Tag, m.tag) {
		return false
	}
	m.idx.RLock()
	defer m.idx.RUnlock()
	return m.byDev[li.Dev] == nil
}

func (m *Manager) linkPaths(name string) []string {
	p := []string{filepath.Join(m.o.LinkDir, name)}
	if m.mapper {
		p = append(p, filepath.Join(m.o.MapperDir, name))
	}
	return p
}

// checkLinks refuses link paths held by something not daxstack's.
func (m *Manager) checkLinks(paths []string, mine linux.Dev) error {
	for _, p := range paths {
		st, what, err := inspectLink(p, linkOwner{leftover: m.leftover, mine: mine})
		if err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
		if st == linkForeign {
			return &LinkError{Path: p, What: what}
		}
	}
	return nil
}

// Add makes the device file name (devfs.FS.Add) and its block device: a
// direct-I/O loop over the file and the links. When it returns the block
// device and the links are in place; on an error nothing is left.
func (m *Manager) Add(name string, d devfs.Device, a devfs.Attr) (Export, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.get(name) != nil {
		return Export{}, fmt.Errorf("block device of %s: %w", name, ErrExists)
	}
	links := m.linkPaths(name)
	if err := m.checkLinks(links, linux.Dev{}); err != nil {
		return Export{}, fmt.Errorf("export %s: %w", name, err)
	}
	if err := m.fs.Add(name, d, a); err != nil {
		return Export{}, err
	}
	e, err := m.attach(name, a.ReadOnly)
	if err != nil {
		m.fs.Remove(name, true)
		return Export{}, fmt.Errorf("export %s: %w", name, err)
	}
	if err := m.link(e, links); err != nil {
		linux.DetachLoop(e.Loop.Path)
		m.fs.Remove(name, true)
		return Export{}, fmt.Errorf("export %s: %w", name, err)
	}
	e.Links = links
	x := e.Export
	x.Links = append([]string(nil), links...)
	m.put(e)
	return x, nil
}

// attach binds a loop to the device file.
func (m *Manager) attach(name string, ro bool) (*export, error) {
	// Read-write even for a read-only device: the loop's read-only state
	// is BLKROSET's, which can be turned off again.
	f, err := m.fs.OpenInternal(name, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	l, err := linux.AttachLoop(f, linux.LoopConfig{BlockSize: 512, DirectIO: true, Tag: m.tagOf(name)})
	f.Close()
	if err != nil {
		return nil, err
	}
	if ro {
		if err := linux.SetReadOnly(l.Path, true); err != nil {
			linux.DetachLoop(l.Path)
			return nil, err
		}
	}
	return &export{Export: Export{Name: name, Loop: l, ReadOnly: ro}}, nil
}

// link makes the links to e's loop; on an error it removes the ones it
// made.
func (m *Manager) link(e *export, paths []string) error {
	for i, p := range paths {
		if err := makeLink(e.Loop.Path, p); err != nil {
			for _, q := range paths[:i] {
				removeLink(q, e.Loop.Path)
			}
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	return nil
}

func (m *Manager) get(name string) *export {
	m.idx.RLock()
	defer m.idx.RUnlock()
	return m.byName[name]
}

func (m *Manager) put(e *export) {
	m.idx.Lock()
	m.byName[e.Name] = e
	m.byDev[e.Loop.Dev] = e
	m.idx.Unlock()
}

func (m *Manager) drop(e *export) {
	m.idx.Lock()
	delete(m.byName, e.Name)
	delete(m.byDev, e.Loop.Dev)
	m.idx.Unlock()
}

// Removed says how a Remove went.
type Removed struct {
	// Deferred: an opener the kernel does not show (a process holding the
	// block device open without O_EXCL) still has the loop device; the
	// loop detaches itself when that opener closes it.
	Deferred bool
}

// Remove tears down the block device of name, then removes its device
// file. A device in use (Usage) is refused with a *BusyError unless force;
// forced, the loop detaches when its last opener closes it, and until then
// its I/O fails with EIO.
func (m *Manager) Remove(name string, force bool) (Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return Removed{}, fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if !force {
		u, err := m.usage(e)
		if err != nil {
			return Removed{}, err
		}
		if u.InUse() {
			return Removed{}, &BusyError{Name: name, Usage: u}
		}
	}
	return m.teardown(e, force)
}

// teardown undoes e: device file, claim, freeze, loop, links. Unforced,
// the device file goes first, so that a client who opened it since the
// usage check refuses the removal with nothing changed. Once under way,
// the export is out of the index whatever fails.
func (m *Manager) teardown(e *export, force bool) (Removed, error) {
	if !force {
		err := m.fs.Remove(e.Name, false)
		if errors.Is(err, devfs.ErrBusy) {
			n, _ := m.fs.Users(e.Name)
			return Removed{}, &BusyError{Name: e.Name, Usage: Usage{FileUsers: n}}
		}
		if err != nil && !errors.Is(err, devfs.ErrNotFound) {
			return Removed{}, err
		}
	}
	m.drop(e)
	var errs []error
	if e.Frozen != "" {
		if err := linux.Thaw(e.Frozen); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, err)
		}
		e.Frozen = ""
	}
	if e.claim != nil {
		errs = append(errs, e.claim.Close())
		e.claim = nil
		e.Claimed = false
	}
	if force {
		if err := m.fs.Remove(e.Name, true); err != nil && !errors.Is(err, devfs.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if e.ReadOnly {
		// BLKROSET outlives the binding: don't leave it to the loop
		// device's next user.
		errs = append(errs, linux.SetReadOnly(e.Loop.Path, false))
	}
	deferred, err := linux.DetachLoop(e.Loop.Path)
	errs = append(errs, err)
	for _, p := range e.Links {
		errs = append(errs, removeLink(p, e.Loop.Path))
	}
	return Removed{Deferred: deferred}, errors.Join(errs...)
}

// Rename moves the export of old to new: the device file is renamed (the
// loop device stays, and its backing file shows the new name) and the
// links move. A link name for new held by something else refuses the
// rename and changes nothing.
func (m *Manager) Rename(old, new string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(old)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", old, ErrNotFound)
	}
	if old == new {
		return nil
	}
	if m.get(new) != nil {
		return fmt.Errorf("block device of %s: %w", new, ErrExists)
	}
	links := m.linkPaths(new)
	if err := m.checkLinks(links, e.Loop.Dev); err != nil {
		return fmt.Errorf("rename %s to %s: %w", old, new, err)
	}
	if err := m.fs.Rename(old, new); err != nil {
		return err
	}
	if err := m.link(e, links); err != nil {
		m.fs.Rename(new, old)
		return fmt.Errorf("rename %s to %s: %w", old, new, err)
	}
	m.drop(e)
	oldLinks := e.Links
	e.Name, e.Links = new, links
	m.put(e)
	var errs []error
	for _, p := range oldLinks {
		errs = append(errs, removeLink(p, e.Loop.Path))
	}
	return errors.Join(errs...)
}

// Resize gives the device file and its block device a new size: when it
// returns, the block device has it (blockdev --getsz shows it).
func (m *Manager) Resize(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if err := m.fs.Resize(name, size); err != nil {
		return err
	}
	return linux.SetCapacity(e.Loop.Path)
}

// SetReadOnly makes the device file and the block device read-only (the
// block device refuses writes with EPERM, the file with EROFS), or
// read-write again.
func (m *Manager) SetReadOnly(name string, ro bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if err := m.fs.SetReadOnly(name, ro); err != nil {
		return err
	}
	if err := linux.SetReadOnly(e.Loop.Path, ro); err != nil {
		m.fs.SetReadOnly(name, e.ReadOnly)
		return err
	}
	m.idx.Lock()
	e.ReadOnly = ro
	m.idx.Unlock()
	return nil
}

// Lookup returns the export of name.
func (m *Manager) Lookup(name string) (Export, bool) {
	m.idx.RLock()
	defer m.idx.RUnlock()
	e := m.byName[name]
	if e == nil {
		return Export{}, false
	}
	x := e.Export
	x.Links = append([]string(nil), e.Links...)
	return x, true
}

// List returns every export, by name.
func (m *Manager) List() []Export {
	m.idx.RLock()
	out := make([]Export, 0, len(m.byName))
	for _, e := range m.byName {
		x := e.Export
		x.Links = append([]string(nil), e.Links...)
		out = append(out, x)
	}
	m.idx.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close tears down every export as a forced Remove does and removes the
// link directories New made if they are empty. The devfs mount is the
// caller's to close afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, x := range m.List() {
		if e := m.get(x.Name); e != nil {
			_, err := m.teardown(e, true)
			errs = append(errs, err)
		}
	}
	for i := len(m.created) - 1; i >= 0; i-- {
		os.Remove(m.created[i]) // fails, as it should, if not empty
	}
	m.created = nil
	return errors.Join(errs...)
}
