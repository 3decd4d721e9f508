package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/fsfiles"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// Files behind bad ranges: which files, byte ranges and metadata of the
// filesystem mounted on a device's block device lie on its bad sectors
// (or on a given range). The block device of a mapped device is the
// daemon's export of it (FilesEnv.BlockDevice); a leaf that is a block
// device, and a block device daxstack does not know at all (/dev/loopN,
// /dev/pmem0), are their own. Package fsfiles does the lookup.

// DefaultFilesLimit is the most entries (file rows, metadata and free
// ranges) a files command returns when its request sets no limit: a lost
// leaf can hit every file, and the answer must fit in one line of the
// daemon's protocol.
const DefaultFilesLimit = 50000

// FilesReq asks what the bad ranges of device Name hit on the filesystem
// mounted on its block device; with Count > 0, what sectors Sector+Count
// of the device hit instead. Name is a mapped device, a leaf, or the path
// of any block device (whose bad ranges, without a range, are its
// badblocks in sysfs: a pmem device's). Limit bounds the entries (0:
// DefaultFilesLimit).
type FilesReq struct {
	Name   string `json:"name"`
	Sector uint64 `json:"sector,omitempty"`
	Count  uint64 `json:"count,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// FilesResp is what a device's sectors hit: the device (as events name
// it, or the path of a block device daxstack does not know), the block
// device looked at, the sectors looked up, and the filesystem's answer
// (mount, fstype, method, file rows in bytes, metadata rows and free runs
// in sectors, files_truncated).
type FilesResp struct {
	Device string     `json:"device"`
	Major  uint32     `json:"major"`
	Minor  uint32     `json:"minor"`
	Ranges extent.Set `json:"ranges"`
	fsfiles.Report
}

// FilesEnv is what a lookup of files needs besides the engine.
type FilesEnv struct {
	// Cache keeps the filesystems (one per block device) from one lookup
	// to the next; nil: one made for the call.
	Cache *fsfiles.Cache
	// BlockDevice returns the block device a mapped device is exported as
	// (the daemon's exports: a loop device over its FUSE file); nil, or
	// ok false, when it is not exported, as in embedded mode.
	BlockDevice func(device string) (major, minor uint32, ok bool)
	// OnlyKnown refuses (EACCES) a block device daxstack does not know:
	// the daemon asks it for peers other than root, who may administer
	// daxstack but not every filesystem of the machine.
	OnlyKnown bool
}

// NotMountedError says that no filesystem is mounted on a device's block
// device, or that the device has no block device. It matches
// fsfiles.ErrNotMounted (and ENOENT, also through the daemon's socket)
// through errors.Is.
type NotMountedError struct {
	Device string
	Why    string
}

func (e *NotMountedError) Error() string {
	return "no filesystem is mounted on " + e.Device + ": " + e.Why
}

// Unwrap returns fsfiles.ErrNotMounted.
func (e *NotMountedError) Unwrap() error { return fsfiles.ErrNotMounted }

// filesPlan is what a files request resolves to before the lookup: the
// block device and the sectors, found under the engine's lock; the lookup
// itself runs without it.
type filesPlan struct {
	device       string
	known        bool   // a device daxstack knows (its ranges are resolved)
	mapped       string // the mapped device's name, to ask for its export
	major, minor uint32
	hasBlock     bool
	sectors      extent.Set
	limit        int
}

// Files says what a device's bad ranges (or the given range) hit on the
// filesystem mounted on its block device. In this process nothing is
// exported, so a mapped device has no block device and no filesystem.
func (e *Engine) Files(ctx context.Context, r FilesReq) (FilesResp, error) {
	return e.FilesWith(ctx, r, FilesEnv{})
}

// FilesWith is Files with the daemon's cache of filesystems and its
// exports.
func (e *Engine) FilesWith(ctx context.Context, r FilesReq, env FilesEnv) (FilesResp, error) {
	p, err := report(e, func() (filesPlan, error) { return e.filesPlan(r) })
	if err != nil {
		return FilesResp{}, err
	}
	return p.lookup(ctx, r, env, e.cfg.SysfsRoot)
}

// Files opens the engine only to resolve the device and its bad ranges;
// the lookup (which may walk a whole filesystem) runs with the database
// closed again.
func (l *Local) Files(ctx context.Context, r FilesReq) (FilesResp, error) {
	p, err := with(l, false, func(e *Engine) (filesPlan, error) {
		return report(e, func() (filesPlan, error) { return e.filesPlan(r) })
	})
	if err != nil {
		return FilesResp{}, err
	}
	return p.lookup(ctx, r, FilesEnv{}, l.Config.SysfsRoot)
}

// filesPlan resolves a request under the engine's lock: a device daxstack
// knows gives its bad ranges (or checks the range against its size); any
// other name must be a block device.
func (e *Engine) filesPlan(r FilesReq) (filesPlan, error) {
	p := filesPlan{limit: r.Limit}
	if p.limit <= 0 {
		p.limit = DefaultFilesLimit
	}
	if r.Name == "" {
		return p, fmt.Errorf("%w: files: no device", ErrUsage)
	}
	d, dev, err := e.target(r.Name)
	if err != nil {
		p.device = r.Name
		return p, nil // not ours: a block device, checked without the lock
	}
	p.device, p.known = rmapchain.DevName(dev), true
	if d != nil {
		p.mapped = d.Name()
	} else if l := e.localLeaf(dev); l != nil {
		if id := l.Identity(); id.Kind == dax.KindPmem || id.Kind == dax.KindBlock {
			p.major, p.minor, p.hasBlock = id.Major, id.Minor, true
		}
	}
	if r.Count > 0 {
		s, err := checkRange(r, dev.Size())
		if err != nil {
			return p, opErr("", r.Name, d, err)
		}
		p.sectors = s
		return p, nil
	}
	p.sectors = e.badSet(dev).Clip(0, dev.Size())
	return p, nil
}

// checkRange checks a given range against a device's size.
func checkRange(r FilesReq, size uint64) (extent.Set, error) {
	if r.Sector+r.Count > size || r.Sector+r.Count < r.Sector {
		return extent.Set{}, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, r.Name, size)
	}
	return extent.FromRuns(extent.Run{Start: r.Sector, Len: r.Count, Count: 1}), nil
}

// lookup finds the block device when the plan has none yet (an export,
// or a block device daxstack does not know) and asks its filesystem.
func (p filesPlan) lookup(ctx context.Context, r FilesReq, env FilesEnv, sysfs string) (FilesResp, error) {
	switch {
	case p.mapped != "":
		if env.BlockDevice != nil {
			p.major, p.minor, p.hasBlock = env.BlockDevice(p.mapped)
		}
		if !p.hasBlock {
			return FilesResp{}, &NotMountedError{Device: p.mapped, Why: "it is not exported as a block device (only the daemon, daxstack serve, exports devices)"}
		}
	case !p.known && env.OnlyKnown:
		return FilesResp{}, fmt.Errorf("%w: %s is not a device daxstack knows: only root may ask the daemon about other block devices", syscall.EACCES, r.Name)
	case !p.known:
		// A name daxstack does not know: a block device, whose bad
		// ranges are its badblocks in sysfs unless a range is given.
		if err := p.blockDevice(r, sysfs); err != nil {
			return FilesResp{}, err
		}
	}
	if !p.hasBlock {
		return FilesResp{}, &NotMountedError{Device: p.device, Why: "it is not a block device"}
	}
	resp := FilesResp{Device: p.device, Major: p.major, Minor: p.minor, Ranges: p.sectors}
	cache := env.Cache
	if cache == nil {
		cache = fsfiles.NewCache(fsfiles.Options{NoWatch: true})
		defer cache.Close()
	}
	res, err := cache.Lookup(ctx, p.major, p.minor, p.sectors, p.limit)
	if errors.Is(err, fsfiles.ErrNotMounted) {
		return resp, &NotMountedError{Device: p.device, Why: fmt.Sprintf("its block device %d:%d has none", p.major, p.minor)}
	}
	if err != nil {
		return resp, fmt.Errorf("files %s: %w", p.device, err)
	}
	resp.Report = res.Report(p.limit)
	return resp, nil
}

// blockDevice resolves a name daxstack does not know: it must be a block
// device; without a range its bad ranges are its badblocks in sysfs.
func (p *filesPlan) blockDevice(r FilesReq, sysfs string) error {
	var st unix.Stat_t
	if err := unix.Stat(r.Name, &st); err != nil {
		return fmt.Errorf("%w: %s is neither a device daxstack knows nor a block device: %w", stack.ErrNotFound, r.Name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%w: %s is neither a device daxstack knows nor a block device", stack.ErrNotFound, r.Name)
	}
	p.major, p.minor, p.hasBlock = unix.Major(st.Rdev), unix.Minor(st.Rdev), true
	size, err := blockSize(r.Name)
	if err != nil {
		return fmt.Errorf("files %s: %w", r.Name, err)
	}
	if r.Count > 0 {
		p.sectors, err = checkRange(r, size)
		return err
	}
	if sysfs == "" {
		sysfs = "/sys"
	}
	b, err := os.ReadFile(filepath.Join(sysfs, "dev", "block", fmt.Sprintf("%d:%d", p.major, p.minor), "badblocks"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s has no bad ranges daxstack knows and no badblocks in sysfs: give --sector and --count", ErrUsage, r.Name)
	}
	if err != nil {
		return fmt.Errorf("files %s: %w", r.Name, err)
	}
	s, err := dax.ParseBadblocks(b)
	if err != nil {
		return fmt.Errorf("files %s: badblocks: %w", r.Name, err)
	}
	p.sectors = s.Clip(0, size)
	return nil
}

// blockSize returns a block device's size in sectors.
func blockSize(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	return uint64(n) / 512, nil
}
