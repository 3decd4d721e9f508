package dax

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// SectorSize is the size of a sector in bytes.
const SectorSize = 512

// Kinds of leaf, as Kind reports them.
const (
	KindPmem   = "pmem"   // a pmem block device (pmemN, pmemN.M)
	KindDevdax = "devdax" // a device-dax character device (daxX.Y)
	KindBlock  = "block"  // any other block device: loop, virtio, ram, ...
	KindFile   = "file"   // a regular file emulating pmem
)

// Poison sources, as PoisonSource reports them.
const (
	SourceSysfs    = "sysfs"    // the kernel's badblocks list
	SourceEmulated = "emulated" // a list kept in memory by the leaf
)

// Leaf is an opened device or file (see the package documentation). Make
// one with Opener.Open or Missing.
type Leaf struct {
	// Read on every I/O, kept together at the start.
	m      atomic.Pointer[mapping]    // &mp once mapped; nil before, and after Close
	poison atomic.Pointer[extent.Set] // nil: none
	size   uint64                     // sectors: what tables were checked against
	cur    atomic.Uint64              // sectors there now, at most size (see size.go)
	closed atomic.Bool
	lost   atomic.Bool
	mp     mapping // set under mapMu before m points at it

	pageTaint bool // page cache mapping over a kernel badblocks list: bad pages go O_DIRECT
	missing   bool // made by Missing: never does I/O
	pread     bool // Opener.Pread: never map, use pread and pwrite

	id, ref, name, kind, path string
	ident                     Identity
	onPoison                  func(l *Leaf, added, cleared extent.Set)

	// What the lazy open checks: a device node's number, or a file's
	// device and inode.
	rdev, stDev, stIno uint64
	align              uint64 // mapping length granule (device-dax align)
	src                poisonSource
	sizeFile           string // sysfs size: sectors (block), bytes (device-dax)
	seqFile            string // sysfs diskseq of a block device
	diskDir            string // <sysfs>/block/<name>
	claim              *claim // ClaimHold: the O_EXCL descriptor's share; under claims' lock
	hold               bool   // opened with ClaimHold: SetLost(false) claims again

	mapMu sync.Mutex // opening, mapping, direct descriptor, Close
	dfd   int        // O_DIRECT descriptor, or -1
	lbs   int        // logical block size for dfd

	pmu sync.Mutex // serialises changes of the poison list

	inflight [ioShards]shard
}

// mapping is a leaf's open descriptor and its whole-leaf mapping.
type mapping struct {
	data     []byte // Size*512 bytes; nil for an empty leaf, or with pread
	ro       bool
	sync     bool // mapped with MAP_SYNC
	pread    bool // no mapping: I/O through pread and pwrite on fd
	fd       int
	access   string // AccessDAXSync, AccessDAX, AccessPageCache or AccessPread
	verified bool   // access read back from the kernel
}

const ioShards = 8

type shard struct {
	n atomic.Int64
	_ [56]byte
}

// ID returns the leaf's stable identity: "blk:M:m" for a block device,
// "chr:M:m" for device-dax, "file:<st_dev>:<st_ino>" for a file.
func (l *Leaf) ID() string { return l.id }

// Ref returns how a table names the leaf: "M:m" for a block device, the
// absolute path otherwise.
func (l *Leaf) Ref() string { return l.ref }

// Name returns the kernel name of a device (pmem0, loop3, dax0.0) or the
// absolute path of a file.
func (l *Leaf) Name() string { return l.name }

// Kind returns KindPmem, KindDevdax, KindBlock or KindFile.
func (l *Leaf) Kind() string { return l.kind }

// Path returns the path the leaf was opened through: the device node with
// symlinks resolved, or the file's absolute path ("" for a block device
// leaf made by Missing).
func (l *Leaf) Path() string { return l.path }

// Size returns the leaf's size in 512-byte sectors, as found by Open (a
// file's size rounded down) or recorded (OpenKnown): the size its tables
// were checked against. A lost leaf keeps reporting it, and so does a leaf
// that got smaller (see CurrentSize and Truncated).
func (l *Leaf) Size() uint64 { return l.size }

// Identity returns what says whether a device that reappears is the same
// one (see Identity.Same).
func (l *Leaf) Identity() Identity { return l.ident }

// Lost reports whether the leaf's device is gone (SetLost, or Missing).
func (l *Leaf) Lost() bool { return l.lost.Load() }

// SetLost marks the leaf gone, so that I/O fails with an error matching
// syscall.ENXIO, or back. A leaf made by Missing never comes back. A lost
// leaf lets go of its claim (ClaimHold): there is nothing left to guard,
// and a held device could not finish going away (losetup -d waits for the
// last opener); a leaf found again is opened, and claimed, anew.
func (l *Leaf) SetLost(lost bool) {
	l.lost.Store(lost || l.missing)
	if lost {
		l.release()
	} else if l.hold && !l.missing && !l.closed.Load() {
		l.reclaim()
	}
}

// Missing returns a placeholder for a leaf recorded earlier that cannot be
// opened now: it has the recorded identity and size, is lost, does no I/O,
// and keeps an emulated poison list (see SetPoison).
func Missing(id, ref, name, kind string, size uint64) *Leaf {
	l := &Leaf{id: id, ref: ref, name: name, kind: kind, size: size, missing: true, dfd: -1}
	l.cur.Store(size)
	if kind == KindFile || (len(ref) > 0 && ref[0] == '/') {
		l.path = ref
	}
	l.lost.Store(true)
	return l
}

// Identity tells devices apart beyond their number, which the kernel
// reuses: a block device's diskseq (new for every attached medium), a loop
// device's backing file and offset, a file's device and inode, a pmem or
// device-dax namespace's UUID. It is comparable, and marshals to JSON for
// keeping in a store.
type Identity struct {
	Kind       string `json:"kind"`
	Major      uint32 `json:"major,omitempty"`
	Minor      uint32 `json:"minor,omitempty"`
	DiskSeq    uint64 `json:"diskseq,omitempty"`     // block devices, when the kernel has it
	Loop       bool   `json:"loop,omitempty"`        // a loop device with a backing file
	BackingDev uint64 `json:"backing_dev,omitempty"` // loop: st_dev of the backing file
	BackingIno uint64 `json:"backing_ino,omitempty"` // loop: st_ino of the backing file
	LoopOffset uint64 `json:"loop_offset,omitempty"` // loop: byte offset into the backing file
	Dev        uint64 `json:"dev,omitempty"`         // file: st_dev
	Ino        uint64 `json:"ino,omitempty"`         // file: st_ino
	UUID       string `json:"uuid,omitempty"`        // pmem / device-dax: the namespace's UUID
}

// String describes the identity for messages: "file 2049:77",
// "loop of 2049:99+4096 (7:3)", "pmem 259:0 diskseq 5 uuid ...".
func (a Identity) String() string {
	switch {
	case a.Kind == "":
		return "no identity"
	case a.Kind == KindFile:
		return fmt.Sprintf("file %d:%d", a.Dev, a.Ino)
	case a.Loop:
		return fmt.Sprintf("loop of %d:%d+%d (%d:%d)", a.BackingDev, a.BackingIno, a.LoopOffset, a.Major, a.Minor)
	}
	s := fmt.Sprintf("%s %d:%d", a.Kind, a.Major, a.Minor)
	if a.DiskSeq != 0 {
		s += fmt.Sprintf(" diskseq %d", a.DiskSeq)
	}
	if a.UUID != "" {
		s += " uuid " + a.UUID
	}
	return s
}

// Same reports whether b, an identity seen now, is the device a was:
//   - files: the same st_dev and st_ino;
//   - loop devices: the same backing file (st_dev, st_ino) at the same
//     offset, whatever the loop's number or diskseq now;
//   - pmem and device-dax with a namespace UUID on both sides: the same
//     UUID (it survives reboots, which diskseq does not);
//   - other devices: the same device number and, when both know it, the
//     same diskseq.
func (a Identity) Same(b Identity) bool {
	if a.Kind == "" || a.Kind != b.Kind {
		return false
	}
	switch {
	case a.Kind == KindFile:
		return a.Ino != 0 && a.Dev == b.Dev && a.Ino == b.Ino
	case a.Loop || b.Loop:
		return a.Loop && b.Loop && a.BackingIno != 0 &&
			a.BackingDev == b.BackingDev && a.BackingIno == b.BackingIno && a.LoopOffset == b.LoopOffset
	case a.UUID != "" && b.UUID != "":
		return a.UUID == b.UUID
	}
	if a.Major != b.Major || a.Minor != b.Minor {
		return false
	}
	return a.DiskSeq == 0 || b.DiskSeq == 0 || a.DiskSeq == b.DiskSeq
}

// enter counts an I/O in flight, so that Close waits for it, and returns
// the mapping to use (mapping the leaf on first use). The caller must call
// exit with the returned shard, whatever the error.
func (l *Leaf) enter() (*mapping, *shard, error) {
	s := &l.inflight[shardHint()%ioShards]
	s.n.Add(1)
	if l.closed.Load() || l.lost.Load() {
		return nil, s, l.unusable()
	}
	if m := l.m.Load(); m != nil {
		return m, s, nil
	}
	m, err := l.open()
	return m, s, err
}

func (l *Leaf) exit(s *shard) { s.n.Add(-1) }

// drain waits until no I/O is in flight. New I/O sees closed and leaves.
func (l *Leaf) drain() {
	for wait := time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		busy := false
		for i := range l.inflight {
			if l.inflight[i].n.Load() != 0 {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		time.Sleep(wait)
	}
}

// Sync makes the leaf's written data durable: msync(MS_SYNC) of the
// mapping (which for a block device also flushes its cache), or for a
// device-dax leaf, which has no msync, the mapping's CPU cache lines
// written back (cpuflush.go). A leaf that has done no I/O has nothing to
// sync.
func (l *Leaf) Sync() error {
	m, s, err := l.enterNoMap()
	defer l.exit(s)
	if err != nil || m == nil {
		if errors.Is(err, ErrLost) {
			return nil // nothing reached it since it went
		}
		return err
	}
	if m.data != nil && l.kind == KindDevdax {
		return l.syncDevdax(m) // device-dax has no msync (cpuflush.go)
	}
	if m.data != nil {
		if err := unix.Msync(m.data, unix.MS_SYNC); err != nil {
			return leafError(l.name, pathErr("msync", l.path, err))
		}
		return nil
	}
	if err := unix.Fsync(m.fd); err != nil {
		return leafError(l.name, pathErr("fsync", l.path, err))
	}
	return nil
}

// enterNoMap is enter without mapping the leaf.
func (l *Leaf) enterNoMap() (*mapping, *shard, error) {
	s := &l.inflight[shardHint()%ioShards]
	s.n.Add(1)
	if l.closed.Load() || l.lost.Load() {
		return nil, s, l.unusable()
	}
	return l.m.Load(), s, nil
}

// unusable is the error of I/O that found the leaf closed or lost (kept
// out of enter, whose fast path is then small enough to inline).
func (l *Leaf) unusable() error {
	if l.closed.Load() {
		return leafError(l.name, ErrClosed)
	}
	return leafError(l.name, ErrLost)
}

// Close waits for the I/O in flight, unmaps the leaf, closes its
// descriptors and releases its claim (see ClaimHold): once Close returns,
// the device can be mounted or claimed again (unless another leaf of this
// process still shares the claim). Later I/O fails with ErrClosed.
// Closing twice is harmless.
func (l *Leaf) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	l.drain()
	l.mapMu.Lock()
	defer l.mapMu.Unlock()
	var errs []error
	if m := l.m.Swap(nil); m != nil {
		if m.data != nil {
			if err := unix.Munmap(m.data); err != nil {
				errs = append(errs, pathErr("munmap", l.path, err))
			}
		}
		if err := unix.Close(m.fd); err != nil {
			errs = append(errs, pathErr("close", l.path, err))
		}
	}
	if l.dfd >= 0 {
		if err := unix.Close(l.dfd); err != nil {
			errs = append(errs, pathErr("close", l.path, err))
		}
		l.dfd = -1
	}
	// Last: the claim outlives every other descriptor of the device, so
	// that nobody can claim it while this leaf still reaches it.
	if err := l.release(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return leafError(l.name, err)
	}
	return nil
}
