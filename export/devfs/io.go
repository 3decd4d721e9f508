package devfs

import (
	"errors"
	"io"
	"sort"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// sectorSize is the unit a failed read is cut at.
const sectorSize = 512

// The I/O requests. Each runs on a goroutine of its own (go-fuse starts a
// reader whenever the last one takes a request), so requests to one file
// and to many run in parallel.

// Read reads from the device. A read that fails after some good sectors
// returns those (a short read); the kernel asks again from the failing
// sector, which then fails with the error: a direct-I/O loop device sees
// exactly the failing sectors fail, as a block device would.
func (fs *server) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h := fs.handle(in.Fh)
	if h == nil {
		return nil, fuse.EBADF
	}
	n := h.n
	if n.gone.Load() {
		return nil, fuse.EIO
	}
	off := int64(in.Offset)
	size := n.size.Load()
	if off >= size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	want := min(int64(in.Size), int64(len(buf)), size-off)
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	if n.lend != nil {
		return lend(ctx, n.lend, off, want)
	}
	got, err := n.dev.ReadAt(ctx, buf[:want], off)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fuse.ReadResultData(buf[:got]), fuse.OK
		}
		if good := goodPrefix(off, int64(got)); good > 0 {
			return fuse.ReadResultData(buf[:good]), fuse.OK
		}
		return nil, status(err)
	}
	return fuse.ReadResultData(buf[:got]), fuse.OK
}

// lend is Read from a ReadLender.
func lend(ctx *fuse.Context, l ReadLender, off, want int64) (fuse.ReadResult, fuse.Status) {
	p, release, err := l.LendAt(ctx, off, int(want))
	var got int64
	for _, s := range p {
		got += int64(len(s))
	}
	if got > want {
		p, got = cut(p, want), want
	}
	if err != nil && !errors.Is(err, io.EOF) {
		good := goodPrefix(off, got)
		if good == 0 {
			if release != nil {
				release()
			}
			return nil, status(err)
		}
		p = cut(p, good)
	}
	return &lent{p: p, release: release}, fuse.OK
}

// cut returns the first n bytes of the pieces p.
func cut(p [][]byte, n int64) [][]byte {
	out := p[:0:0]
	for _, s := range p {
		if n <= 0 {
			break
		}
		k := min(int64(len(s)), n)
		out = append(out, s[:k])
		n -= k
	}
	return out
}

// lent is a reply of lent bytes: go-fuse writes the pieces to the kernel
// as they are (writev) and calls Done after.
type lent struct {
	p       [][]byte
	release func()
}

func (r *lent) Size() int {
	n := 0
	for _, s := range r.p {
		n += len(s)
	}
	return n
}

// Slices gives go-fuse the pieces to write as they are.
func (r *lent) Slices() ([][]byte, fuse.Status) { return r.p, fuse.OK }

// Bytes flattens the pieces (go-fuse only asks when it can't use Slices).
func (r *lent) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(r.p) == 1 {
		return r.p[0], fuse.OK
	}
	out := buf[:0]
	for _, s := range r.p {
		out = append(out, s...)
	}
	return out, fuse.OK
}

func (r *lent) Done() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

// goodPrefix is how many of got bytes read at off end on a sector
// boundary.
func goodPrefix(off, got int64) int64 {
	end := (off + got) &^ (sectorSize - 1)
	return max(end-off, 0)
}

// Write writes to the device. A write the client asked to be synchronous
// (O_SYNC, O_DSYNC, RWF_DSYNC: the kernel passes them in the request) is
// durable when it returns. A write that fails is failed whole, never
// short: a loop device takes a short write for a complete one. Writes
// past the end fail with ENOSPC; one that crosses it is cut short for a
// client, as on a block device, and failed whole for daxstack's own loop
// (whose capacity can lag a shrink by a moment).
func (fs *server) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	h := fs.handle(in.Fh)
	if h == nil {
		return 0, fuse.EBADF
	}
	n := h.n
	if n.gone.Load() {
		return 0, fuse.EIO
	}
	if n.ro.Load() {
		return 0, fuse.Status(syscall.EROFS)
	}
	off := int64(in.Offset)
	size := n.size.Load()
	if off >= size {
		return 0, fuse.Status(syscall.ENOSPC)
	}
	if rest := size - off; int64(len(data)) > rest {
		if h.internal {
			return 0, fuse.Status(syscall.ENOSPC)
		}
		data = data[:rest]
	}
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	var err error
	switch {
	case in.Flags&(unix.O_DSYNC|unix.O_SYNC) == 0:
		_, err = n.dev.WriteAt(ctx, data, off)
	case n.fua != nil:
		_, err = n.fua.WriteAtFUA(ctx, data, off)
	default:
		if _, err = n.dev.WriteAt(ctx, data, off); err == nil {
			err = n.dev.Flush(ctx)
		}
	}
	if err != nil {
		return 0, status(err)
	}
	return uint32(len(data)), fuse.OK
}

// Fsync is the device's Flush.
func (fs *server) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	if h.n.gone.Load() {
		return fuse.EIO
	}
	return status(h.n.dev.Flush(&fuse.Context{Caller: in.Caller, Cancel: cancel}))
}

// Flush (at each close) is not asked for (FOPEN_NOFLUSH); if it is, there
// is nothing to do.
func (fs *server) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fallocate modes (include/uapi/linux/falloc.h).
const (
	fallocKeepSize  = unix.FALLOC_FL_KEEP_SIZE
	fallocPunchHole = unix.FALLOC_FL_PUNCH_HOLE
	fallocZeroRange = unix.FALLOC_FL_ZERO_RANGE
)

// Fallocate serves fallocate(2) as a device file can:
//
//   - FALLOC_FL_ZERO_RANGE is the device's WriteZeroes: zeros that clear
//     failed sectors, as a write does.
//   - FALLOC_FL_PUNCH_HOLE (with KEEP_SIZE, as the kernel requires) must
//     leave zeros behind, as on any file: it is WriteZeroes, then the
//     device's Discard as a hint. A loop device turns both its discards
//     and its write-zeroes requests into punches, so a punch that kept the
//     old data would make a filesystem's zeroing (ext4's inode tables) a
//     no-op.
//   - mode 0 (allocate) succeeds inside the device (all of it is
//     allocated) and past its end fails with ENOSPC, as extending does.
//
// A range past the end is cut at the end with KEEP_SIZE and fails with
// ENOSPC without it. Other modes (collapse, insert, unshare) fail with
// EOPNOTSUPP.
func (fs *server) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	n := h.n
	if n.gone.Load() {
		return fuse.EIO
	}
	keep := in.Mode&fallocKeepSize != 0
	op := in.Mode &^ fallocKeepSize
	if op != 0 && op != fallocZeroRange && op != fallocPunchHole {
		return fuse.ENOTSUP
	}
	if n.ro.Load() {
		return fuse.Status(syscall.EROFS)
	}
	off, length := int64(in.Offset), int64(in.Length)
	if off < 0 || length <= 0 || off+length < off {
		return fuse.EINVAL
	}
	size := n.size.Load()
	if off+length > size {
		if !keep {
			return fuse.Status(syscall.ENOSPC)
		}
		length = size - off
	}
	if op == 0 || length <= 0 {
		return fuse.OK
	}
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	if err := n.dev.WriteZeroes(ctx, off, length); err != nil {
		return status(err)
	}
	if op == fallocPunchHole {
		if err := n.dev.Discard(ctx, off, length); err != nil && !errors.Is(err, syscall.EOPNOTSUPP) {
			return status(err)
		}
	}
	return fuse.OK
}

func sortNodes(ns []*node) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].name < ns[j].name })
}
