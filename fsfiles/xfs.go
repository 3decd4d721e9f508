package fsfiles

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unsafe"
)

// XFS_IOC_FSGEOMETRY (fs/xfs/libxfs/xfs_fs.h): _IOR('X', 126, struct
// xfs_fsop_geom), 256 bytes.
const (
	xfsGeomSize       = 256
	xfsIocFsgeometry  = 2<<30 | xfsGeomSize<<16 | 'X'<<8 | 126
	xfsGeomFlagRmapbt = 1 << 19 // XFS_FSOP_GEOM_FLAGS_RMAPBT
)

// xfsGeom is the part of struct xfs_fsop_geom this package uses.
type xfsGeom struct {
	BlockSize  uint32 // bytes
	AGBlocks   uint32 // blocks per allocation group
	AGCount    uint32
	LogBlocks  uint32
	SectSize   uint32
	InodeSize  uint32
	DataBlocks uint64
	LogStart   uint64 // fsblock number (AG number << agblklog | AG block); 0: external log
	Flags      uint32
}

// decodeXFSGeom decodes struct xfs_fsop_geom and checks what the
// arithmetic below relies on: power-of-two sizes, sectors of at least 512
// bytes, inodes that fit a block, a non-empty allocation group.
func decodeXFSGeom(b []byte) (xfsGeom, error) {
	if len(b) < 96 {
		return xfsGeom{}, fmt.Errorf("%w: xfs geometry of %d bytes", ErrMalformed, len(b))
	}
	le := binary.LittleEndian
	g := xfsGeom{
		BlockSize: le.Uint32(b[0:]), AGBlocks: le.Uint32(b[8:]), AGCount: le.Uint32(b[12:]),
		LogBlocks: le.Uint32(b[16:]), SectSize: le.Uint32(b[20:]), InodeSize: le.Uint32(b[24:]),
		DataBlocks: le.Uint64(b[32:]), LogStart: le.Uint64(b[56:]), Flags: le.Uint32(b[92:]),
	}
	pow2 := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
	if g.AGCount > 1<<31 || !pow2(g.BlockSize) || g.BlockSize < 512 || g.BlockSize > 1<<16 || !pow2(g.SectSize) || g.SectSize < 512 ||
		g.SectSize > g.BlockSize || !pow2(g.InodeSize) || g.InodeSize > g.BlockSize || g.AGBlocks == 0 || g.AGCount == 0 {
		return xfsGeom{}, fmt.Errorf("%w: xfs geometry block %d sector %d inode %d agblocks %d agcount %d",
			ErrMalformed, g.BlockSize, g.SectSize, g.InodeSize, g.AGBlocks, g.AGCount)
	}
	return g, nil
}

func xfsGeometry(fd int) (xfsGeom, error) {
	var buf [xfsGeomSize]byte
	if err := ioctlPtr(fd, xfsIocFsgeometry, unsafe.Pointer(&buf[0])); err != nil {
		return xfsGeom{}, err
	}
	return decodeXFSGeom(buf[:])
}

// rmap reports whether the filesystem has reverse-mapping btrees, so that
// GETFSMAP names the owner of every block.
func (g xfsGeom) rmap() bool { return g.Flags&xfsGeomFlagRmapbt != 0 }

// agblklog is sb_agblklog: log2 of agblocks rounded up.
func (g xfsGeom) agblklog() uint { return uint(bits.Len32(g.AGBlocks - 1)) }

// inopblog is sb_inopblog: log2 of inodes per block.
func (g xfsGeom) inopblog() uint { return uint(bits.TrailingZeros32(g.BlockSize / g.InodeSize)) }

// sectorsPerBlock is the block size in 512-byte sectors.
func (g xfsGeom) sectorsPerBlock() uint64 { return uint64(g.BlockSize) / 512 }

// fsbToSector converts an XFS fsblock number (AG << agblklog | AG block) to
// a device sector; ok is false for a number outside the filesystem.
func (g xfsGeom) fsbToSector(fsb uint64) (uint64, bool) {
	ag, agbno := fsb>>g.agblklog(), fsb&(1<<g.agblklog()-1)
	if ag >= uint64(g.AGCount) || agbno >= uint64(g.AGBlocks) {
		return 0, false
	}
	return (ag*uint64(g.AGBlocks) + agbno) * g.sectorsPerBlock(), true
}

// inoToSector returns the device sector of the block holding inode ino.
func (g xfsGeom) inoToSector(ino uint64) (uint64, bool) {
	ag := ino >> (g.agblklog() + g.inopblog())
	agino := ino & (1<<(g.agblklog()+g.inopblog()) - 1)
	return g.fsbToSector(ag<<g.agblklog() | agino>>g.inopblog())
}

// region is a range of device sectors with a known kind of metadata.
type region struct {
	Start, Len uint64
	Kind       Kind
	Detail     string
	Ino        uint64 // the file it belongs to, if any
}

// staticRegions returns what the geometry alone places within sectors
// [lo, hi): the headers at the start of every allocation group
// (superblock, AGF, AGI, AGFL, which the rmap calls "static fs metadata")
// and the internal log.
func (g xfsGeom) staticRegions(lo, hi uint64) []region {
	spb := g.sectorsPerBlock()
	agSectors := uint64(g.AGBlocks) * spb
	// The four headers are one sector each; the AGFL is the last, in block
	// XFS_AGFL_BLOCK = (3 * sectsize) / blocksize.
	hdrBlocks := uint64(3*g.SectSize/g.BlockSize) + 1
	var out []region
	for ag := lo / agSectors; ag < uint64(g.AGCount) && ag*agSectors < hi; ag++ {
		out = append(out, region{Start: ag * uint64(g.AGBlocks) * spb, Len: hdrBlocks * spb, Kind: KindStatic,
			Detail: fmt.Sprintf("allocation group %d headers", ag)})
	}
	if g.LogStart != 0 && g.LogBlocks > 0 {
		if s, ok := g.fsbToSector(g.LogStart); ok {
			out = append(out, region{Start: s, Len: uint64(g.LogBlocks) * spb, Kind: KindJournal, Detail: "internal log"})
		}
	}
	return out
}

// XFS_IOC_INUMBERS: _IOR('X', 128, struct xfs_inumbers_req): a 64-byte
// struct xfs_bulk_ireq (u64 ino, u32 flags, u32 icount, u32 ocount, u32
// agno, u64 reserved[5]) followed by icount 24-byte struct xfs_inumbers
// (u64 xi_startino, u64 xi_allocmask, u8 xi_alloccount, u8 xi_version, u8
// padding[6]).
const (
	xfsBulkIreqSize = 64
	xfsInumbersSize = 24
	xfsIocInumbers  = 2<<30 | xfsBulkIreqSize<<16 | 'X'<<8 | 128
	xfsInumBatch    = 1024
	xfsInodesPerChk = 64
)

// inodeChunks returns the sectors of every allocated inode chunk, from
// XFS_IOC_INUMBERS: without reverse mapping, the only way to tell inode
// records from other metadata.
func (g xfsGeom) inodeChunks(fd int) ([]region, error) {
	buf := make([]byte, xfsBulkIreqSize+xfsInumBatch*xfsInumbersSize)
	le := binary.LittleEndian
	chunkBytes := uint64(xfsInodesPerChk) * uint64(g.InodeSize)
	chunkSectors := max(chunkBytes, uint64(g.BlockSize)) / 512
	var out []region
	var next uint64
	for {
		clear(buf[:xfsBulkIreqSize])
		le.PutUint64(buf[0:], next)
		le.PutUint32(buf[12:], xfsInumBatch)
		if err := ioctlPtr(fd, xfsIocInumbers, unsafe.Pointer(&buf[0])); err != nil {
			return nil, err
		}
		starts, last, err := decodeInumbers(buf)
		if err != nil {
			return nil, err
		}
		if len(starts) == 0 {
			return out, nil
		}
		for _, ino := range starts {
			if s, ok := g.inoToSector(ino); ok {
				out = append(out, region{Start: s, Len: chunkSectors, Kind: KindInodes})
			}
		}
		if last <= next && next != 0 {
			return out, nil
		}
		next = last
	}
}

// decodeInumbers decodes an XFS_IOC_INUMBERS reply: the start inode of
// each chunk, and the header's ino, where the next call resumes.
func decodeInumbers(buf []byte) (starts []uint64, next uint64, err error) {
	if len(buf) < xfsBulkIreqSize {
		return nil, 0, fmt.Errorf("%w: inumbers head of %d bytes", ErrMalformed, len(buf))
	}
	le := binary.LittleEndian
	next = le.Uint64(buf[0:])
	icount, ocount := le.Uint32(buf[12:]), le.Uint32(buf[16:])
	if ocount > icount || uint64(ocount) > uint64(len(buf)-xfsBulkIreqSize)/xfsInumbersSize {
		return nil, 0, fmt.Errorf("%w: inumbers reply of %d groups for %d slots", ErrMalformed, ocount, icount)
	}
	starts = make([]uint64, ocount)
	for i := range starts {
		starts[i] = le.Uint64(buf[xfsBulkIreqSize+i*xfsInumbersSize:])
	}
	return starts, next, nil
}
