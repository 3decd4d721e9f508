package dax

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// Opener opens leaves. The zero Opener uses the real /sys and /dev.
type Opener struct {
	// SysfsRoot is where sysfs is mounted; "" means /sys.
	SysfsRoot string
	// DevRoot is where device nodes are; "" means /dev. A "major:minor"
	// reference opens <DevRoot>/<DEVNAME of the device>.
	DevRoot string
	// OnPoison, if set, is called whenever a leaf's poison list changes
	// through the leaf: sectors added by Inject, cleared by a write that
	// covers them or by Clear. It is called from the goroutine that made
	// the change, with no lock of the leaf held; calls for changes made
	// concurrently may arrive in either order.
	OnPoison func(l *Leaf, added, cleared extent.Set)
	// Claim says whether Open checks that nobody else uses a block
	// device (pmem included), and whether the leaf then holds it
	// exclusively until Close (see ClaimMode). A long-lived process that
	// holds stacks (the daemon) wants ClaimHold; a process that exits
	// after one command can only promise ClaimCheck: the device was
	// neither mounted nor claimed when it opened it, and nothing stops a
	// mount between two commands.
	Claim ClaimMode
	// Pread makes leaves use pread and pwrite instead of a mapping
	// (AccessPread), as they do anyway when they cannot be mapped.
	Pread bool
}

func (o *Opener) sysfs() string {
	if o.SysfsRoot == "" {
		return "/sys"
	}
	return o.SysfsRoot
}

func (o *Opener) dev() string {
	if o.DevRoot == "" {
		return "/dev"
	}
	return o.DevRoot
}

// Open resolves ref to a leaf: a path (a regular file, a block device node
// or a device-dax node; relative paths are taken from the working
// directory, and symlinks to device nodes are followed) or "major:minor" of
// a block device. It only stats and reads sysfs: the device or file is
// opened and mapped on the leaf's first I/O. Errors wrap the cause, so
// errors.Is(err, fs.ErrNotExist) (or syscall.ENOENT) tells a missing
// device; a character device that is not device-dax, or a directory,
// gives ErrUnsupported.
func (o *Opener) Open(ref string) (*Leaf, error) {
	if ref == "" {
		return nil, fmt.Errorf("dax: open: empty reference: %w", syscall.ENOENT)
	}
	if ma, mi, ok := parseDevno(ref); ok {
		path, err := o.blockNode(ma, mi)
		if err != nil {
			return nil, fmt.Errorf("dax: open %s: %w", ref, err)
		}
		l, err := o.openPath(path, ref)
		if err != nil {
			return nil, err
		}
		if l.kind == KindFile || l.kind == KindDevdax || l.ident.Major != ma || l.ident.Minor != mi {
			l.Close()
			return nil, fmt.Errorf("dax: open %s: %s is %s, not block device %s: %w", ref, path, l.id, ref, ErrChanged)
		}
		return l, nil
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return nil, fmt.Errorf("dax: open %s: %w", ref, err)
	}
	return o.openPath(abs, ref)
}

// blockNode finds the node of block device major:minor through sysfs.
func (o *Opener) blockNode(ma, mi uint32) (string, error) {
	ue, err := readUevent(filepath.Join(o.sysfs(), "dev", "block", fmt.Sprintf("%d:%d", ma, mi), "uevent"))
	if err != nil {
		return "", fmt.Errorf("no block device %d:%d: %w", ma, mi, err)
	}
	name := ue["DEVNAME"]
	if name == "" || strings.Contains(name, "..") {
		return "", fmt.Errorf("block device %d:%d has no device name in sysfs: %w", ma, mi, syscall.ENOENT)
	}
	return filepath.Join(o.dev(), name), nil
}

func (o *Opener) openPath(abs, ref string) (*Leaf, error) {
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return nil, fmt.Errorf("dax: open %s: %w", ref, pathErr("stat", abs, err))
	}
	var (
		l   *Leaf
		err error
	)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		l = o.fileLeaf(abs, &st)
	case unix.S_IFBLK, unix.S_IFCHR:
		real, rerr := filepath.EvalSymlinks(abs)
		if rerr != nil {
			return nil, fmt.Errorf("dax: open %s: %w", ref, rerr)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			l, err = o.blockLeaf(real, &st)
		} else {
			l, err = o.daxLeaf(real, &st)
		}
	default:
		err = fmt.Errorf("%s: %w", abs, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("dax: open %s: %w", ref, err)
	}
	l.cur.Store(l.size)
	return l, nil
}

func (o *Opener) newLeaf() *Leaf { return &Leaf{onPoison: o.OnPoison, dfd: -1, pread: o.Pread} }

func (o *Opener) fileLeaf(abs string, st *unix.Stat_t) *Leaf {
	l := o.newLeaf()
	l.kind, l.path, l.ref, l.name = KindFile, abs, abs, abs
	l.id = fmt.Sprintf("file:%d:%d", st.Dev, st.Ino)
	l.size = uint64(st.Size) / SectorSize
	l.stDev, l.stIno = st.Dev, st.Ino
	l.ident = Identity{Kind: KindFile, Dev: st.Dev, Ino: st.Ino}
	return l
}

func (o *Opener) blockLeaf(path string, st *unix.Stat_t) (*Leaf, error) {
	ma, mi := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	devno := fmt.Sprintf("%d:%d", ma, mi)
	sysdir := filepath.Join(o.sysfs(), "dev", "block", devno)
	l := o.newLeaf()
	l.kind, l.path, l.ref, l.id, l.rdev = KindBlock, path, devno, "blk:"+devno, st.Rdev
	l.name = filepath.Base(path)
	l.sizeFile, l.seqFile = filepath.Join(sysdir, "size"), filepath.Join(sysdir, "diskseq")
	ue, _ := readUevent(filepath.Join(sysdir, "uevent"))
	if n := ue["DEVNAME"]; n != "" {
		l.name = n
	}
	if pmemName(l.name) {
		l.kind = KindPmem
	}
	if sz, err := readUint(filepath.Join(sysdir, "size")); err == nil {
		l.size = sz
	} else if sz, err := blockSize(path); err == nil {
		l.size = sz / SectorSize
	} else {
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	l.ident = Identity{Kind: l.kind, Major: ma, Minor: mi}
	if seq, err := readUint(filepath.Join(sysdir, "diskseq")); err == nil {
		l.ident.DiskSeq = seq
	} else if seq, err := strconv.ParseUint(ue["DISKSEQ"], 10, 64); err == nil {
		l.ident.DiskSeq = seq
	}
	disk := filepath.Join(o.sysfs(), "block", l.name)
	l.diskDir = disk
	if loopName(l.name) {
		loopIdentity(&l.ident, disk, path)
	}
	if l.kind == KindPmem {
		if u := namespaceUUID(filepath.Join(disk, "device")); u != "" {
			l.ident.UUID = u
		}
		file := filepath.Join(disk, "badblocks")
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			set, err := ParseBadblocks(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			l.src = poisonSource{kind: srcPmem, file: file}
			l.pageTaint = true
			l.storePoison(set.Clip(0, l.size))
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	if err := o.claimBlock(l, path, sysdir); err != nil {
		return nil, err
	}
	return l, nil
}

// namespaceUUID returns the UUID of the nd namespace under a pmem or
// device-dax device, given the sysfs directory the device hangs off: the
// namespace itself (a raw namespace), or the pfn, btt or nd dax device the
// kernel sets up over it (fsdax, sector and devdax modes), whose own uuid
// is new every time one is set up (ndctl create-namespace) and whose
// "namespace" attribute names the namespace, a sibling in the same
// region. "" when sysfs does not say.
func namespaceUUID(parent string) string {
	if ns, err := readAttr(filepath.Join(parent, "namespace")); err == nil {
		if ns == "" || strings.ContainsAny(ns, "/") || ns == "." || ns == ".." {
			return ""
		}
		real, err := filepath.EvalSymlinks(parent)
		if err != nil {
			return ""
		}
		u, _ := readAttr(filepath.Join(filepath.Dir(real), ns, "uuid"))
		return u
	}
	u, _ := readAttr(filepath.Join(parent, "uuid"))
	return u
}

// loopIdentity fills in a loop device's backing file and offset, from
// sysfs or, failing that (the backing file was deleted, or lives in
// another mount namespace), from the device.
func loopIdentity(id *Identity, disk, node string) {
	if bf, err := readAttr(filepath.Join(disk, "loop", "backing_file")); err == nil {
		off, oerr := readUint(filepath.Join(disk, "loop", "offset"))
		var st unix.Stat_t
		if oerr == nil && unix.Stat(strings.TrimSuffix(bf, " (deleted)"), &st) == nil {
			id.Loop, id.BackingDev, id.BackingIno, id.LoopOffset = true, st.Dev, st.Ino, off
			return
		}
	}
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if info, err := unix.IoctlLoopGetStatus64(fd); err == nil {
		id.Loop, id.BackingDev, id.BackingIno, id.LoopOffset = true, info.Device, info.Inode, info.Offset
	}
}

// blockSize asks a block device its size in bytes (BLKGETSIZE64).
func blockSize(path string) (uint64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	var size uint64
	if err := ioctlSize(fd, &size); err != nil {
		return 0, pathErr("ioctl BLKGETSIZE64", path, err)
	}
	return size, nil
}

// ioctlSize asks the block device open on fd its size in bytes.
func ioctlSize(fd int, size *uint64) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(size))); e != 0 {
		return e
	}
	return nil
}

var regionRE = regexp.MustCompile(`^region\d+$`)

func (o *Opener) daxLeaf(path string, st *unix.Stat_t) (*Leaf, error) {
	ma, mi := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	devno := fmt.Sprintf("%d:%d", ma, mi)
	sysdir := filepath.Join(o.sysfs(), "dev", "char", devno)
	if sub := subsystem(sysdir); sub != "dax" {
		if sub == "" {
			sub = "unknown"
		}
		return nil, fmt.Errorf("%s is character device %s of subsystem %s, not device-dax: %w", path, devno, sub, ErrUnsupported)
	}
	l := o.newLeaf()
	l.kind, l.path, l.ref, l.id, l.rdev = KindDevdax, path, path, "chr:"+devno, st.Rdev
	l.name = filepath.Base(path)
	if ue, err := readUevent(filepath.Join(sysdir, "uevent")); err == nil && ue["DEVNAME"] != "" {
		l.name = ue["DEVNAME"]
	}
	daxdir := filepath.Join(o.sysfs(), "bus", "dax", "devices", l.name)
	bytes, err := readUint(filepath.Join(daxdir, "size"))
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", l.name, err)
	}
	l.size = bytes / SectorSize
	l.sizeFile = filepath.Join(daxdir, "size")
	if a, err := readUint(filepath.Join(daxdir, "align")); err == nil && a > 0 && a&(a-1) == 0 {
		l.align = a
	}
	l.ident = Identity{Kind: KindDevdax, Major: ma, Minor: mi}
	real, err := filepath.EvalSymlinks(daxdir)
	if err != nil {
		return l, nil // no sysfs detail: emulated poison
	}
	if u := namespaceUUID(filepath.Dir(real)); u != "" {
		l.ident.UUID = u
	}
	region := ""
	for _, part := range strings.Split(real, string(filepath.Separator)) {
		if regionRE.MatchString(part) {
			region = part
		}
	}
	if region == "" {
		return l, nil
	}
	rdir := filepath.Join(o.sysfs(), "bus", "nd", "devices", region)
	rstart, err := readUint(filepath.Join(rdir, "resource"))
	if err != nil {
		return l, nil
	}
	ranges, ok := daxRanges(daxdir, rstart, bytes)
	if !ok {
		return l, nil
	}
	src := poisonSource{kind: srcDevdax, file: filepath.Join(rdir, "badblocks"), ranges: ranges}
	l.src = src
	set, err := l.readSysfs()
	if err != nil {
		l.src = poisonSource{}
		return l, nil
	}
	l.storePoison(set)
	return l, nil
}

// daxRanges says where a device-dax device lies in its region: one range
// per mappingN directory (start, end, page_offset), or the device's
// resource and size when there are none.
func daxRanges(daxdir string, rstart, size uint64) ([]daxRange, bool) {
	var out []daxRange
	for i := 0; ; i++ {
		mdir := filepath.Join(daxdir, fmt.Sprintf("mapping%d", i))
		start, err1 := readUint(filepath.Join(mdir, "start"))
		end, err2 := readUint(filepath.Join(mdir, "end"))
		pgoff, err3 := readUint(filepath.Join(mdir, "page_offset"))
		if errors.Is(err1, fs.ErrNotExist) && i > 0 {
			break
		}
		if err1 != nil || err2 != nil || err3 != nil {
			if i > 0 {
				return nil, false
			}
			start, err := readUint(filepath.Join(daxdir, "resource"))
			if err != nil || start < rstart || (start-rstart)%SectorSize != 0 {
				return nil, false
			}
			return []daxRange{{Region: (start - rstart) / SectorSize, Dev: 0, Len: size / SectorSize}}, true
		}
		if start < rstart || end < start || (start-rstart)%SectorSize != 0 {
			return nil, false
		}
		out = append(out, daxRange{
			Region: (start - rstart) / SectorSize,
			Dev:    pgoff * uint64(pageSize) / SectorSize,
			Len:    (end + 1 - start) / SectorSize,
		})
	}
	return out, true
}
