package fsfiles

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The ext4 superblock (fs/ext4/ext4.h, struct ext4_super_block), 1024
// bytes at byte 1024 of the device. Only the fields used here.
const (
	ext4SuperOffset  = 1024
	ext4SuperSize    = 1024
	ext4Magic        = 0xEF53
	ext4CompatJnl    = 0x4    // COMPAT_HAS_JOURNAL
	ext4CompatResize = 0x10   // COMPAT_RESIZE_INODE
	ext4ResizeIno    = 7      // EXT4_RESIZE_INO
	ext4IncompatJDev = 0x8    // INCOMPAT_JOURNAL_DEV
	ext4Incompat64   = 0x80   // INCOMPAT_64BIT
	ext4IncompatMeta = 0x10   // INCOMPAT_META_BG: group descriptors scattered
	ext4JnlBackupBlk = 1      // EXT3_JNL_BACKUP_BLOCKS: s_jnl_blocks holds the journal inode's i_block
	ext4ExtentMagic  = 0xF30A // struct ext4_extent_header eh_magic
	ext4InodeExtents = 0x80000
	ext4MaxDepth     = 5 // EXT4_MAX_EXTENT_DEPTH
)

type ext4Super struct {
	BlockSize      uint64
	BlocksCount    uint64
	FirstDataBlock uint32
	BlocksPerGroup uint32
	InodesPerGroup uint32
	InodesCount    uint32
	InodeSize      uint32
	DescSize       uint32
	Compat         uint32
	Incompat       uint32
	JournalInum    uint32
	JnlBackup      uint8
	JnlBlocks      [60]byte // a copy of the journal inode's i_block
}

// parseExt4Super decodes the superblock and checks the values the
// arithmetic relies on.
func parseExt4Super(b []byte) (ext4Super, error) {
	if len(b) < ext4SuperSize {
		return ext4Super{}, fmt.Errorf("%w: ext4 superblock of %d bytes", ErrMalformed, len(b))
	}
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != ext4Magic {
		return ext4Super{}, fmt.Errorf("%w: no ext4 magic", ErrMalformed)
	}
	logBlock := le.Uint32(b[0x18:])
	if logBlock > 6 { // 64 KiB blocks at most
		return ext4Super{}, fmt.Errorf("%w: ext4 block size 2^(10+%d)", ErrMalformed, logBlock)
	}
	s := ext4Super{
		BlockSize:      1024 << logBlock,
		BlocksCount:    uint64(le.Uint32(b[0x04:])),
		FirstDataBlock: le.Uint32(b[0x14:]),
		BlocksPerGroup: le.Uint32(b[0x20:]),
		InodesPerGroup: le.Uint32(b[0x28:]),
		InodesCount:    le.Uint32(b[0x00:]),
		InodeSize:      uint32(le.Uint16(b[0x58:])),
		Compat:         le.Uint32(b[0x5C:]),
		Incompat:       le.Uint32(b[0x60:]),
		JournalInum:    le.Uint32(b[0xE0:]),
		JnlBackup:      b[0xFD],
		DescSize:       32,
	}
	copy(s.JnlBlocks[:], b[0x10C:0x10C+60])
	if s.Incompat&ext4Incompat64 != 0 {
		s.BlocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		s.DescSize = uint32(le.Uint16(b[0xFE:]))
	}
	if s.BlocksPerGroup == 0 || s.InodesPerGroup == 0 || s.InodeSize < 128 || s.InodeSize > uint32(s.BlockSize) ||
		s.InodeSize&(s.InodeSize-1) != 0 || s.DescSize < 32 || s.DescSize > 1024 || s.DescSize&(s.DescSize-1) != 0 {
		return ext4Super{}, fmt.Errorf("%w: ext4 geometry blocks/group %d inodes/group %d inode %d desc %d",
			ErrMalformed, s.BlocksPerGroup, s.InodesPerGroup, s.InodeSize, s.DescSize)
	}
	return s, nil
}

// ext4Extent is a leaf of an extent tree: file blocks [Block, Block+Len)
// at device block Start.
type ext4Extent struct {
	Block uint32
	Len   uint32
	Start uint64
}

// ext4Node is one node of an extent tree: a leaf's extents or an index's
// children (device blocks).
type ext4Node struct {
	Depth    uint16
	Extents  []ext4Extent
	Children []uint64
}

// parseExt4Node decodes an extent-tree node (the 60 bytes of i_block, or a
// tree block): struct ext4_extent_header (u16 magic, entries, max, depth;
// u32 generation) then 12-byte entries, struct ext4_extent in a leaf
// (u32 ee_block, u16 ee_len, u16 ee_start_hi, u32 ee_start_lo) and struct
// ext4_extent_idx above (u32 ei_block, u32 ei_leaf_lo, u16 ei_leaf_hi).
func parseExt4Node(b []byte) (ext4Node, error) {
	le := binary.LittleEndian
	if len(b) < 12 || le.Uint16(b[0:]) != ext4ExtentMagic {
		return ext4Node{}, fmt.Errorf("%w: no extent header", ErrMalformed)
	}
	entries, maxEnt, depth := int(le.Uint16(b[2:])), int(le.Uint16(b[4:])), le.Uint16(b[6:])
	if entries > maxEnt || 12+12*maxEnt > len(b) || depth > ext4MaxDepth {
		return ext4Node{}, fmt.Errorf("%w: extent header entries %d max %d depth %d in %d bytes", ErrMalformed, entries, maxEnt, depth, len(b))
	}
	n := ext4Node{Depth: depth}
	for i := range entries {
		e := b[12+12*i:]
		if depth == 0 {
			l := uint32(le.Uint16(e[4:]))
			if l > 32768 {
				l -= 32768 // an unwritten extent
			}
			n.Extents = append(n.Extents, ext4Extent{Block: le.Uint32(e[0:]), Len: l, Start: uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))})
		} else {
			n.Children = append(n.Children, uint64(le.Uint16(e[8:]))<<32|uint64(le.Uint32(e[4:])))
		}
	}
	return n, nil
}

// ext4TreeLimit bounds the nodes read from one extent tree.
const ext4TreeLimit = 1 << 16

// ext4Tree walks the extent tree whose root is i_block: its leaves and the
// device blocks of its index and leaf nodes below the root (the root lives
// in the inode). Blocks are read through dev.
func ext4Tree(dev io.ReaderAt, sb ext4Super, iblock []byte) (leaves []ext4Extent, tree []uint64, err error) {
	root, err := parseExt4Node(iblock)
	if err != nil {
		return nil, nil, err
	}
	type item struct {
		blk   uint64
		depth uint16
	}
	leaves = root.Extents
	var todo []item
	for _, c := range root.Children {
		todo = append(todo, item{c, root.Depth - 1})
	}
	buf := make([]byte, sb.BlockSize)
	for len(todo) > 0 {
		if len(tree) >= ext4TreeLimit {
			return nil, nil, fmt.Errorf("%w: extent tree of more than %d blocks", ErrMalformed, ext4TreeLimit)
		}
		it := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if it.blk >= sb.BlocksCount {
			return nil, nil, fmt.Errorf("%w: extent tree block %d past the end", ErrMalformed, it.blk)
		}
		if _, err := dev.ReadAt(buf, int64(it.blk*sb.BlockSize)); err != nil {
			return nil, nil, err
		}
		n, err := parseExt4Node(buf)
		if err != nil {
			return nil, nil, err
		}
		if n.Depth != it.depth {
			return nil, nil, fmt.Errorf("%w: extent tree node at depth %d, expected %d", ErrMalformed, n.Depth, it.depth)
		}
		tree = append(tree, it.blk)
		leaves = append(leaves, n.Extents...)
		for _, c := range n.Children {
			todo = append(todo, item{c, n.Depth - 1})
		}
	}
	return leaves, tree, nil
}

// ext4InodeBlock returns the i_block and i_flags of inode ino, read from
// the inode table through dev (the block device's page cache holds
// ext4's metadata as the filesystem sees it, dirty or not).
func ext4InodeBlock(dev io.ReaderAt, sb ext4Super, ino uint64) (iblock []byte, flags uint32, err error) {
	if ino == 0 || ino > uint64(sb.InodesCount) {
		return nil, 0, fmt.Errorf("%w: inode %d out of range", ErrMalformed, ino)
	}
	if sb.Incompat&ext4IncompatMeta != 0 {
		return nil, 0, fmt.Errorf("%w: ext4 meta_bg descriptors", ErrUnsupported)
	}
	group := (ino - 1) / uint64(sb.InodesPerGroup)
	index := (ino - 1) % uint64(sb.InodesPerGroup)
	descBlock := uint64(sb.FirstDataBlock) + 1
	descOff := descBlock*sb.BlockSize + group*uint64(sb.DescSize)
	desc := make([]byte, sb.DescSize)
	if _, err := dev.ReadAt(desc, int64(descOff)); err != nil {
		return nil, 0, err
	}
	le := binary.LittleEndian
	table := uint64(le.Uint32(desc[0x08:]))
	if sb.DescSize >= 64 {
		table |= uint64(le.Uint32(desc[0x28:])) << 32
	}
	if table == 0 || table >= sb.BlocksCount {
		return nil, 0, fmt.Errorf("%w: inode table of group %d at block %d", ErrMalformed, group, table)
	}
	raw := make([]byte, 128)
	if _, err := dev.ReadAt(raw, int64(table*sb.BlockSize+index*uint64(sb.InodeSize))); err != nil {
		return nil, 0, err
	}
	return raw[0x28 : 0x28+60], le.Uint32(raw[0x20:]), nil
}

// ext4Regions returns the ext4 structures that GETFSMAP leaves unnamed
// but the superblock and the inodes place: the internal journal, and the
// extent-tree blocks of every file whose tree has blocks of its own (read
// only while unknown sectors remain, and remembered per inode).
func (lk *lookup) ext4Regions(sb *ext4Super) []region {
	spb := sb.BlockSize / 512
	var out []region
	if sb.Compat&ext4CompatJnl != 0 && sb.JournalInum != 0 && sb.Incompat&ext4IncompatJDev == 0 {
		if leaves, tree, err := lk.journalExtents(sb); err == nil {
			for _, e := range leaves {
				out = append(out, region{Start: e.Start * spb, Len: uint64(e.Len) * spb, Kind: KindJournal, Detail: fmt.Sprintf("inode %d", sb.JournalInum)})
			}
			for _, b := range tree {
				out = append(out, region{Start: b * spb, Len: spb, Kind: KindJournal, Detail: fmt.Sprintf("inode %d extent tree", sb.JournalInum)})
			}
		}
	}
	// Before the superblock: the boot block (block 0 of a filesystem of
	// 1 KiB blocks, which GETFSMAP does not report).
	out = append(out, region{Start: 0, Len: ext4SuperOffset / 512, Kind: KindStatic, Detail: "boot block"})
	dev, err := lk.fs.openDevice()
	if err != nil {
		return out
	}
	// The resize inode's double-indirect block (its indirect blocks are
	// the reserved GDT blocks GETFSMAP names).
	if sb.Compat&ext4CompatResize != 0 {
		if iblock, flags, err := ext4InodeBlock(dev, *sb, ext4ResizeIno); err == nil && flags&ext4InodeExtents == 0 {
			if dind := uint64(binary.LittleEndian.Uint32(iblock[13*4:])); dind != 0 && dind < sb.BlocksCount {
				out = append(out, region{Start: dind * spb, Len: spb, Kind: KindReservedGDT, Detail: "resize inode"})
			}
		}
	}
	if lk.st == nil || len(lk.st.deep) == 0 {
		return out
	}
	for ino := range lk.st.deep {
		t, ok := lk.st.trees[ino]
		if !ok {
			iblock, flags, err := ext4InodeBlock(dev, *sb, ino)
			if err == nil && flags&ext4InodeExtents != 0 {
				_, blocks, err := ext4Tree(dev, *sb, iblock)
				if err == nil {
					t.blocks = blocks
				}
			}
			lk.st.trees[ino] = t
		}
		for _, b := range t.blocks {
			out = append(out, region{Start: b * spb, Len: spb, Kind: KindExtentMap, Ino: ino})
		}
	}
	return out
}

// journalExtents returns the journal's extents from the copy of its
// inode's i_block the superblock keeps (s_jnl_blocks), following index
// blocks through the device when the tree is deeper than the inode.
func (lk *lookup) journalExtents(sb *ext4Super) ([]ext4Extent, []uint64, error) {
	if sb.JnlBackup != ext4JnlBackupBlk {
		return nil, nil, fmt.Errorf("%w: no journal backup in the superblock", ErrUnsupported)
	}
	n, err := parseExt4Node(sb.JnlBlocks[:])
	if err != nil {
		return nil, nil, err
	}
	if n.Depth == 0 {
		return n.Extents, nil, nil
	}
	dev, err := lk.fs.openDevice()
	if err != nil {
		return nil, nil, err
	}
	return ext4Tree(dev, *sb, sb.JnlBlocks[:])
}
