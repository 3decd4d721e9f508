package dax

import (
	"errors"
	"io/fs"
	"os"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = int64(os.Getpagesize())

func pathErr(op, path string, err error) error { return &fs.PathError{Op: op, Path: path, Err: err} }

// shardHint picks a counter shard for the calling goroutine: a hash of
// its stack address, so that a goroutine keeps using the same shard (and
// cache line) while goroutines on other cores mostly use others.
func shardHint() uint32 {
	var x byte
	h := uint64(uintptr(unsafe.Pointer(&x))>>12) * 0x9e3779b97f4a7c15
	return uint32(h >> 32)
}

// open opens and maps the leaf on its first I/O.
func (l *Leaf) open() (*mapping, error) {
	if l.missing {
		return nil, leafError(l.name, ErrLost)
	}
	l.mapMu.Lock()
	defer l.mapMu.Unlock()
	if l.closed.Load() {
		return nil, leafError(l.name, ErrClosed)
	}
	if m := l.m.Load(); m != nil {
		return m, nil
	}
	m, err := l.mapLeaf(false)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		// A read-only block device opens read-write but refuses a
		// shared mapping that may be written: map it read-only.
		m, err = l.mapLeaf(true)
	}
	if err != nil {
		return nil, err
	}
	l.mp = *m
	l.m.Store(&l.mp)
	return &l.mp, nil
}

// mapLeaf opens the leaf (read-only if ro, or if opening it for writing is
// refused) and maps it whole, or, if it cannot be mapped (or pread is
// asked for), sets it up for pread and pwrite. It finds out how the
// mapping is used (see Access).
func (l *Leaf) mapLeaf(ro bool) (*mapping, error) {
	fd, ro, err := l.openFD(0, ro)
	if err != nil {
		return nil, err
	}
	m := &mapping{fd: fd, ro: ro}
	length := int64(l.size) * SectorSize
	if l.pread || length == 0 {
		m.pread, m.access, m.verified = length > 0, AccessPread, true
		if length == 0 {
			m.access = AccessPageCache
		}
		return m, nil
	}
	mapLen := length
	if l.align > 0 {
		mapLen = (length + int64(l.align) - 1) / int64(l.align) * int64(l.align)
	}
	prot := unix.PROT_READ
	if !ro {
		prot |= unix.PROT_WRITE
	}
	if mapLen > maxMap {
		err = unix.ENOMEM
	} else {
		var data []byte
		data, err = unix.Mmap(fd, 0, int(mapLen), prot, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC)
		m.sync = err == nil
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			data, err = unix.Mmap(fd, 0, int(mapLen), prot, unix.MAP_SHARED)
		}
		if err == nil {
			m.data = data[:length]
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EOVERFLOW):
		// Too large for the address space, or a file system that
		// cannot map files: pread and pwrite work on both. (EINVAL and
		// EACCES are a read-only device refusing a writable mapping:
		// open retries read-only.)
		if l.kind == KindDevdax {
			unix.Close(fd)
			return nil, leafError(l.name, pathErr("mmap", l.path, err)) // device-dax has no read(2)
		}
		m.pread, m.access, m.verified = true, AccessPread, true
		return m, nil
	default:
		unix.Close(fd)
		return nil, leafError(l.name, pathErr("mmap", l.path, err))
	}
	inodeDAX, _ := statxDAX(fd)
	if m.sync || inodeDAX || l.kind == KindDevdax {
		// Read back what the kernel made of it (VmFlags "sf": MAP_SYNC
		// in force). It costs a read of this process's smaps, a few
		// hundred microseconds, once per mapping (BenchmarkAccessCheck).
		flags, have := vmFlagsOf(uintptr(unsafe.Pointer(&m.data[0])))
		m.access, m.verified = classify(l.kind, flags, have, m.sync, inodeDAX)
	} else {
		// The kernel refused MAP_SYNC, and the inode is not DAX (a block
		// device never is): the page cache, by the kernel's own answers.
		m.access, m.verified = AccessPageCache, true
	}
	return m, nil
}

// maxMap bounds a mapping: beyond it (x86-64 user space is 128 TiB) mmap
// would fail anyway, and the leaf uses pread.
const maxMap = 1 << 46

// openFD opens the leaf's path read-write (read-only if ro, or if writing
// is refused) with extra flags, and checks that it is the object Open
// stat'ed.
func (l *Leaf) openFD(flags int, ro bool) (fd int, _ bool, err error) {
	if l.kind == KindFile {
		// A FIFO put at the path since Open stat'ed it must not block
		// the open (the check below refuses it); O_NONBLOCK changes
		// nothing for a regular file.
		flags |= unix.O_NONBLOCK
	}
	if ro {
		err = unix.EROFS
	} else {
		fd, err = unix.Open(l.path, unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EPERM) {
		ro = true
		fd, err = unix.Open(l.path, unix.O_RDONLY|unix.O_CLOEXEC|flags, 0)
	}
	if err != nil {
		return -1, false, leafError(l.name, pathErr("open", l.path, err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, false, leafError(l.name, pathErr("fstat", l.path, err))
	}
	same := false
	switch l.kind {
	case KindFile:
		same = st.Mode&unix.S_IFMT == unix.S_IFREG && st.Dev == l.stDev && st.Ino == l.stIno
	case KindDevdax:
		same = st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == l.rdev
	default:
		same = st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == l.rdev
	}
	if !same {
		unix.Close(fd)
		return -1, false, leafError(l.name, pathErr("open", l.path, ErrChanged))
	}
	return fd, ro, nil
}

// direct returns the leaf's O_DIRECT descriptor, opening it on first use,
// and the logical block size its I/O must be aligned to.
func (l *Leaf) direct() (int, int, error) {
	l.mapMu.Lock()
	defer l.mapMu.Unlock()
	if l.closed.Load() {
		return -1, 0, leafError(l.name, ErrClosed)
	}
	if l.dfd >= 0 {
		return l.dfd, l.lbs, nil
	}
	fd, _, err := l.openFD(unix.O_DIRECT, false)
	if err != nil {
		return -1, 0, err
	}
	lbs := SectorSize
	if l.kind != KindFile {
		if n, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && n >= SectorSize && n&(n-1) == 0 {
			lbs = n
		}
	}
	l.dfd, l.lbs = fd, lbs
	return fd, lbs, nil
}

// guardedCopy copies src to dst, one of which is in a mapping, and reports
// a fault (SIGBUS, SIGSEGV) instead of crashing. After a fault an unknown
// part of dst was written.
func guardedCopy(dst, src []byte) (n int, faulted bool) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			n, faulted = 0, true
		}
	}()
	return copy(dst, src), false
}

// pagedCopy copies src to dst page by page of the mapping, whose byte off
// is where the mapped side starts, and stops at the first page that
// faults: it returns how many bytes were copied before it.
func pagedCopy(dst, src []byte, off int64) int {
	done := 0
	for done < len(dst) {
		pos := off + int64(done)
		n := min(int64(len(dst)-done), pageSize-pos%pageSize)
		if _, faulted := guardedCopy(dst[done:done+int(n)], src[done:done+int(n)]); faulted {
			break
		}
		done += int(n)
	}
	return done
}

// alignedBuf returns n bytes aligned to the page size, as O_DIRECT wants.
func alignedBuf(n int) []byte {
	b := make([]byte, n+int(pageSize))
	skip := int((pageSize - int64(uintptr(unsafe.Pointer(&b[0])))%pageSize) % pageSize)
	return b[skip : skip+n : skip+n]
}

// preadFull reads len(b) bytes at off from fd, retrying short reads.
func preadFull(fd int, b []byte, off int64) (int, error) {
	return fullIO(unix.Pread, fd, b, off)
}

// pwriteFull writes b at off to fd, retrying short writes.
func pwriteFull(fd int, b []byte, off int64) (int, error) {
	return fullIO(unix.Pwrite, fd, b, off)
}

// fullIO moves all of b with op, retrying on EINTR and after short
// transfers; a transfer of nothing means the device ended early (EIO).
func fullIO(op func(int, []byte, int64) (int, error), fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := op(fd, b[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, unix.EIO
		}
		done += n
	}
	return done, nil
}

// directRead reads len(p) bytes at byte off of the leaf with O_DIRECT
// through an aligned bounce buffer. If the device fails part of it, the
// blocks before the failing one are still copied: it returns how many
// bytes of p are good, the byte offset of the failing block and the error.
func (l *Leaf) directRead(p []byte, off int64) (int, int64, error) {
	if len(p) == 0 {
		return 0, off, nil
	}
	fd, lbs, err := l.direct()
	if err != nil {
		return 0, off, err
	}
	b := int64(lbs)
	lo, hi := off/b*b, (off+int64(len(p))+b-1)/b*b
	buf := alignedBuf(int(hi - lo))
	if _, err := preadFull(fd, buf, lo); err == nil {
		return copy(p, buf[off-lo:]), 0, nil
	}
	// Again a block at a time, to find the first that fails.
	for at := lo; at < hi; at += b {
		blk := buf[at-lo : at-lo+b]
		if _, err := preadFull(fd, blk, at); err != nil {
			good := max(at, off) - off
			copy(p[:good], buf[off-lo:])
			return int(good), max(at, off), err
		}
	}
	return copy(p, buf[off-lo:]), 0, nil
}

// directWrite writes p at byte off of the leaf with O_DIRECT, reading the
// blocks it covers only in part first. It returns how many bytes of p
// reached the device (all or none of each block), the byte offset of the
// failing block, and the error.
func (l *Leaf) directWrite(p []byte, off int64) (int, int64, error) {
	if len(p) == 0 {
		return 0, off, nil
	}
	fd, lbs, err := l.direct()
	if err != nil {
		return 0, off, err
	}
	b := int64(lbs)
	end := off + int64(len(p))
	lo, hi := off/b*b, (end+b-1)/b*b
	buf := alignedBuf(int(hi - lo))
	if off != lo {
		if _, err := preadFull(fd, buf[:b], lo); err != nil {
			return 0, lo, err
		}
	}
	if end != hi && (hi-b != lo || off == lo) {
		if _, err := preadFull(fd, buf[hi-lo-b:], hi-b); err != nil {
			return 0, hi - b, err
		}
	}
	copy(buf[off-lo:], p)
	n, err := pwriteFull(fd, buf, lo)
	if err != nil {
		// Whole blocks were written up to lo+n (rounded down).
		at := lo + int64(n)/b*b
		return int(max(at, off) - off), max(at, off), err
	}
	return len(p), 0, nil
}
