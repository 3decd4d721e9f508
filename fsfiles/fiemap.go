package fsfiles

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// FIEMAP, from include/uapi/linux/fiemap.h. struct fiemap is 32 bytes: u64
// fm_start, u64 fm_length, u32 fm_flags, u32 fm_mapped_extents, u32
// fm_extent_count, u32 fm_reserved; then fm_extent_count struct
// fiemap_extent of 56 bytes: u64 fe_logical, u64 fe_physical, u64
// fe_length, u64 fe_reserved64[2], u32 fe_flags, u32 fe_reserved[3].
const (
	fiemapHeadSize = 32
	fiemapExtSize  = 56
	fsIocFiemap    = 3<<30 | fiemapHeadSize<<16 | 'f'<<8 | 11 // _IOWR('f', 11, struct fiemap)

	fiemapFlagSync  = 0x1
	fiemapFlagXattr = 0x2

	fiemapExtentLast       = 0x1
	fiemapExtentUnknown    = 0x2 // location not known yet
	fiemapExtentDelalloc   = 0x4 // delayed allocation: no location yet
	fiemapExtentNotAligned = 0x100
	fiemapExtentDataInline = 0x200 // data held in the inode or another block of metadata
	fiemapExtentDataTail   = 0x400
	fiemapExtentUnwritten  = 0x800
	fiemapExtentShared     = 0x2000
)

// fileExtent is one mapped extent of a file, in bytes.
type fileExtent struct {
	Logical, Physical, Length uint64
	Flags                     uint32 // FIEMAP_EXTENT_*
}

// located reports whether the extent has a place on the device that a bad
// sector can hit: not delayed, not unknown, not data packed into metadata.
func (e fileExtent) located() bool {
	return e.Flags&(fiemapExtentUnknown|fiemapExtentDelalloc|fiemapExtentDataInline|fiemapExtentDataTail|fiemapExtentNotAligned) == 0 && e.Length > 0
}

// fiemapBatch is how many extents one FIEMAP call asks for.
const fiemapBatch = 64

// mapper keeps the buffer of FIEMAP and GETBMAPX calls; one per goroutine.
type mapper struct {
	buf []byte
}

// fiemap returns the extents of the open file fd (its data, or with
// fiemapFlagXattr its extended attributes). pending is true when some of
// the file's data has no place on the device yet (delayed allocation):
// writeback will give it one without any event, so the file must be
// mapped again before it can be trusted.
func (m *mapper) fiemap(fd int, flags uint32) (exts []fileExtent, pending bool, err error) {
	if len(m.buf) < fiemapHeadSize+fiemapBatch*fiemapExtSize {
		m.buf = make([]byte, fiemapHeadSize+fiemapBatch*fiemapExtSize)
	}
	le := binary.LittleEndian
	var start uint64
	for {
		clear(m.buf[:fiemapHeadSize])
		le.PutUint64(m.buf[0:], start)
		le.PutUint64(m.buf[8:], ^uint64(0)-start)
		le.PutUint32(m.buf[16:], flags)
		le.PutUint32(m.buf[24:], fiemapBatch)
		if err := ioctlPtr(fd, fsIocFiemap, unsafe.Pointer(&m.buf[0])); err != nil {
			return nil, false, err
		}
		got, err := decodeFiemap(m.buf)
		if err != nil {
			return nil, false, err
		}
		if len(got) == 0 {
			return exts, pending, nil
		}
		for _, e := range got {
			if e.Flags&(fiemapExtentDelalloc|fiemapExtentUnknown) != 0 {
				pending = true
			}
			exts = append(exts, e)
		}
		last := got[len(got)-1]
		next := last.Logical + last.Length
		if last.Flags&fiemapExtentLast != 0 || len(got) < fiemapBatch || next <= start {
			return exts, pending, nil
		}
		start = next
	}
}

// decodeFiemap decodes a struct fiemap reply: the mapped count must fit
// the slots asked for and the buffer, and no extent may wrap 2^64.
func decodeFiemap(buf []byte) ([]fileExtent, error) {
	if len(buf) < fiemapHeadSize {
		return nil, fmt.Errorf("%w: fiemap head of %d bytes", ErrMalformed, len(buf))
	}
	le := binary.LittleEndian
	mapped, count := le.Uint32(buf[20:]), le.Uint32(buf[24:])
	if mapped > count || uint64(mapped) > uint64(len(buf)-fiemapHeadSize)/fiemapExtSize {
		return nil, fmt.Errorf("%w: fiemap reply of %d extents for %d slots", ErrMalformed, mapped, count)
	}
	out := make([]fileExtent, mapped)
	for i := range out {
		b := buf[fiemapHeadSize+i*fiemapExtSize:]
		e := fileExtent{Logical: le.Uint64(b[0:]), Physical: le.Uint64(b[8:]), Length: le.Uint64(b[16:]), Flags: le.Uint32(b[40:])}
		if e.Logical+e.Length < e.Logical || e.Physical+e.Length < e.Physical {
			return nil, fmt.Errorf("%w: fiemap extent %d+%d at %d wraps", ErrMalformed, e.Logical, e.Length, e.Physical)
		}
		out[i] = e
	}
	return out, nil
}

// XFS_IOC_GETBMAPX (fs/xfs/libxfs/xfs_fs.h): _IOWR('X', 56, struct getbmap)
// — the size in the number is struct getbmap's (32 bytes) although the
// array is of struct getbmapx (48 bytes: s64 bmv_offset, bmv_block,
// bmv_length; s32 bmv_count, bmv_entries, bmv_iflags, bmv_oflags,
// bmv_unused1, bmv_unused2), in 512-byte units. It is the only way to map
// an XFS directory: XFS answers FIEMAP only for regular files.
const (
	getbmapxSize    = 48
	xfsIocGetbmapx  = 3<<30 | 32<<16 | 'X'<<8 | 56
	bmvIfAttrfork   = 0x1
	bmvIfPrealloc   = 0x4
	bmvIfNoHoles    = 0x10
	bmvOfPrealloc   = 0x1
	bmvOfDelalloc   = 0x2
	bmvOfLast       = 0x4
	bmvOfShared     = 0x8
	getbmapxBatch   = 64
	bmvBlockHole    = -1
	bmvBlockDelayed = -2
)

// getbmapx returns the extents of the open XFS file or directory fd (its
// attribute fork with attr), converted to fileExtent with FIEMAP's flags.
func (m *mapper) getbmapx(fd int, attr bool) (exts []fileExtent, pending bool, err error) {
	size := (getbmapxBatch + 1) * getbmapxSize
	if len(m.buf) < size {
		m.buf = make([]byte, max(size, fiemapHeadSize+fiemapBatch*fiemapExtSize))
	}
	le := binary.LittleEndian
	iflags := uint32(bmvIfPrealloc | bmvIfNoHoles)
	if attr {
		iflags |= bmvIfAttrfork
	}
	var start int64
	for {
		clear(m.buf[:size])
		le.PutUint64(m.buf[0:], uint64(start))
		le.PutUint64(m.buf[16:], ^uint64(0)) // bmv_length -1: to the end
		le.PutUint32(m.buf[24:], getbmapxBatch+1)
		le.PutUint32(m.buf[32:], iflags)
		if err := ioctlPtr(fd, xfsIocGetbmapx, unsafe.Pointer(&m.buf[0])); err != nil {
			return nil, false, err
		}
		got, last, err := decodeGetbmapx(m.buf[:size])
		if err != nil {
			return nil, false, err
		}
		for _, e := range got {
			if e.Flags&fiemapExtentDelalloc != 0 {
				pending = true
			}
			exts = append(exts, e)
		}
		if last || len(got) == 0 {
			return exts, pending, nil
		}
		e := got[len(got)-1]
		next := int64((e.Logical + e.Length) / 512)
		if next <= start {
			return exts, pending, nil
		}
		start = next
	}
}

// decodeGetbmapx decodes a GETBMAPX reply (header then bmv_entries
// records), dropping holes; last is true when the kernel marked the final
// record of the file.
func decodeGetbmapx(buf []byte) (exts []fileExtent, last bool, err error) {
	if len(buf) < getbmapxSize {
		return nil, false, fmt.Errorf("%w: getbmapx head of %d bytes", ErrMalformed, len(buf))
	}
	le := binary.LittleEndian
	count, entries := int32(le.Uint32(buf[24:])), int32(le.Uint32(buf[28:]))
	if entries < 0 || count < 1 || entries > count-1 || int(entries) > len(buf)/getbmapxSize-1 {
		return nil, false, fmt.Errorf("%w: getbmapx reply of %d entries for %d slots", ErrMalformed, entries, count)
	}
	for i := 1; i <= int(entries); i++ {
		b := buf[i*getbmapxSize:]
		off, block, length := int64(le.Uint64(b[0:])), int64(le.Uint64(b[8:])), int64(le.Uint64(b[16:]))
		oflags := le.Uint32(b[36:])
		if off < 0 || length < 0 || off > (1<<54) || length > (1<<54) || block < bmvBlockDelayed || block > (1<<54) {
			return nil, false, fmt.Errorf("%w: getbmapx record %d+%d at %d", ErrMalformed, off, length, block)
		}
		if oflags&bmvOfLast != 0 {
			last = true
		}
		if block == bmvBlockHole || length == 0 {
			continue
		}
		e := fileExtent{Logical: uint64(off) * 512, Length: uint64(length) * 512}
		if block == bmvBlockDelayed || oflags&bmvOfDelalloc != 0 {
			e.Flags |= fiemapExtentDelalloc
		} else {
			e.Physical = uint64(block) * 512
		}
		if oflags&bmvOfPrealloc != 0 {
			e.Flags |= fiemapExtentUnwritten
		}
		if oflags&bmvOfShared != 0 {
			e.Flags |= fiemapExtentShared
		}
		exts = append(exts, e)
	}
	return exts, last, nil
}
