package fsfiles

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GETFSMAP, from include/uapi/linux/fsmap.h. struct fsmap is 64 bytes:
// u32 fmr_device, u32 fmr_flags, u64 fmr_physical, u64 fmr_owner, u64
// fmr_offset, u64 fmr_length, u64 fmr_reserved[3]; struct fsmap_head is
// u32 fmh_iflags, u32 fmh_oflags, u32 fmh_count, u32 fmh_entries, u64
// fmh_reserved[6], struct fsmap fmh_keys[2], then fmh_count records.
const (
	fsmapRecSize  = 64
	fsmapHeadSize = 64 + 2*fsmapRecSize
	// FS_IOC_GETFSMAP is _IOWR('X', 59, struct fsmap_head).
	fsIocGetfsmap = 3<<30 | fsmapHeadSize<<16 | 'X'<<8 | 59

	fmhOfDevT = 0x1 // fmr_device values are dev_t (new_encode_dev)

	fmrOfPrealloc     = 0x1  // unwritten pre-allocation
	fmrOfAttrFork     = 0x2  // attribute fork
	fmrOfExtentMap    = 0x4  // extent map (bmbt) blocks
	fmrOfShared       = 0x8  // shared with another file
	fmrOfSpecialOwner = 0x10 // fmr_owner is a special value
	fmrOfLast         = 0x20 // the last record of the dataset
)

// fmrOwner is FMR_OWNER(type, code).
func fmrOwner(typ byte, code uint32) uint64 { return uint64(typ)<<32 | uint64(code) }

// Special owners: generic (type 0), XFS's ('X', shared with ext4 where the
// meaning is the same) and ext4's own ('f').
var (
	ownFree     = fmrOwner(0, 1)
	ownUnknown  = fmrOwner(0, 2)
	ownMetadata = fmrOwner(0, 3)
)

// specialKinds names the special owners of fs/xfs/libxfs/xfs_fs.h
// (XFS_FMR_OWN_*) and fs/ext4/fsmap.h (EXT4_FMR_OWN_*).
var specialKinds = map[uint64]Kind{
	fmrOwner(0, 3):   KindMetadata,
	fmrOwner('X', 1): KindStatic,
	fmrOwner('X', 2): KindJournal,
	fmrOwner('X', 3): KindPerAG,
	fmrOwner('X', 4): KindInodeBtree,
	fmrOwner('X', 5): KindInodes,
	fmrOwner('X', 6): KindRefcount,
	fmrOwner('X', 7): KindCOW,
	fmrOwner('X', 8): KindDefective,
	fmrOwner('f', 1): KindGroupDesc,
	fmrOwner('f', 2): KindReservedGDT,
	fmrOwner('f', 3): KindBlockBitmap,
	fmrOwner('f', 4): KindInodeBitmap,
}

// fsmapRecord is one struct fsmap, in bytes.
type fsmapRecord struct {
	Device   uint32
	Flags    uint32
	Physical uint64
	Owner    uint64
	Offset   uint64
	Length   uint64
}

func (r fsmapRecord) special() bool { return r.Flags&fmrOfSpecialOwner != 0 }

// decodeFsmap decodes a struct fsmap_head and its records from buf as the
// kernel left it: the header's entry count must fit both fmh_count and the
// buffer, and no record may run past 2^64 bytes.
func decodeFsmap(buf []byte) (oflags uint32, recs []fsmapRecord, err error) {
	return decodeFsmapInto(buf, nil)
}

// decodeFsmapInto is decodeFsmap appending to recs[:0].
func decodeFsmapInto(buf []byte, recs []fsmapRecord) (oflags uint32, _ []fsmapRecord, err error) {
	if len(buf) < fsmapHeadSize {
		return 0, nil, fmt.Errorf("%w: fsmap head of %d bytes", ErrMalformed, len(buf))
	}
	le := binary.LittleEndian
	oflags = le.Uint32(buf[4:])
	count, entries := le.Uint32(buf[8:]), le.Uint32(buf[12:])
	if entries > count || uint64(entries) > uint64(len(buf)-fsmapHeadSize)/fsmapRecSize {
		return 0, nil, fmt.Errorf("%w: fsmap reply of %d entries for %d slots", ErrMalformed, entries, count)
	}
	recs = recs[:0]
	for i := range int(entries) {
		r := decodeFsmapRec(buf[fsmapHeadSize+i*fsmapRecSize:])
		if r.Physical+r.Length < r.Physical {
			return 0, nil, fmt.Errorf("%w: fsmap record %d+%d wraps", ErrMalformed, r.Physical, r.Length)
		}
		recs = append(recs, r)
	}
	return oflags, recs, nil
}

func decodeFsmapRec(b []byte) fsmapRecord {
	le := binary.LittleEndian
	return fsmapRecord{
		Device:   le.Uint32(b[0:]),
		Flags:    le.Uint32(b[4:]),
		Physical: le.Uint64(b[8:]),
		Owner:    le.Uint64(b[16:]),
		Offset:   le.Uint64(b[24:]),
		Length:   le.Uint64(b[32:]),
	}
}

func encodeFsmapRec(b []byte, r fsmapRecord) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], r.Device)
	le.PutUint32(b[4:], r.Flags)
	le.PutUint64(b[8:], r.Physical)
	le.PutUint64(b[16:], r.Owner)
	le.PutUint64(b[24:], r.Offset)
	le.PutUint64(b[32:], r.Length)
	clear(b[40:64])
}

// encodeDev is the kernel's new_encode_dev, the dev_t of fmr_device.
func encodeDev(major, minor uint32) uint32 {
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

// fsmapBatch is how many records one GETFSMAP call returns at most.
const fsmapBatch = 512

var fsmapBufs = sync.Pool{New: func() any {
	b := make([]byte, fsmapHeadSize+fsmapBatch*fsmapRecSize)
	return &b
}}

// getfsmap calls fn with every record of the data device dev (encoded as
// the kernel's fmr_device) that overlaps the bytes [lo, hi], paging as
// include/uapi/linux/fsmap.h says: the last record of one reply is the low
// key of the next call. Both keys name the device: XFS and ext4 ignore a
// key's physical address when its device is not the one being queried. The
// records are as the kernel gives them, not clipped to [lo, hi]. fn
// returning false stops the query. A reply that does not move the low key
// forward ends it too (a kernel that loops would otherwise hang us).
func getfsmap(fd int, dev uint32, lo, hi uint64, fn func(fsmapRecord) bool) error {
	bp := fsmapBufs.Get().(*[]byte)
	defer fsmapBufs.Put(bp)
	buf := *bp
	le := binary.LittleEndian
	low := fsmapRecord{Device: dev, Physical: lo}
	high := fsmapRecord{Device: dev, Physical: hi, Owner: ^uint64(0), Offset: ^uint64(0)}
	var recs []fsmapRecord
	for {
		clear(buf[:fsmapHeadSize])
		le.PutUint32(buf[8:], fsmapBatch)
		encodeFsmapRec(buf[64:], low)
		encodeFsmapRec(buf[64+fsmapRecSize:], high)
		if err := ioctlPtr(fd, fsIocGetfsmap, unsafe.Pointer(&buf[0])); err != nil {
			return err
		}
		oflags, got, err := decodeFsmapInto(buf, recs)
		recs = got
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		for _, r := range recs {
			if oflags&fmhOfDevT != 0 && r.Device != dev {
				continue // the log or realtime device, not the one asked about
			}
			if !fn(r) {
				return nil
			}
		}
		last := recs[len(recs)-1]
		if last.Flags&fmrOfLast != 0 || !fsmapKeyAfter(last, low) {
			return nil
		}
		low = last
	}
}

// fsmapKeyAfter reports whether record r's key (physical, owner, offset)
// sorts after the low key k, so that paging makes progress.
func fsmapKeyAfter(r, k fsmapRecord) bool {
	switch {
	case r.Physical != k.Physical:
		return r.Physical > k.Physical
	case r.Owner != k.Owner:
		return r.Owner > k.Owner
	case r.Offset != k.Offset:
		return r.Offset > k.Offset
	}
	return r.Length > k.Length
}

// ioctlPtr is ioctl(fd, req, arg) with EINTR retried.
func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}
