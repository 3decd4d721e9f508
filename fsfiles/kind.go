package fsfiles

// Kind says what a range of a filesystem's blocks holds when it is not a
// file's data: the words are those of GETFSMAP's owners (xfs_io's fsmap
// command prints the same), plus the structures a FIEMAP walk or the
// filesystem's superblock and geometry name.
type Kind string

// Kinds of metadata.
const (
	// KindStatic: the superblock and the fixed headers at the start of each
	// XFS allocation group or ext4 block group.
	KindStatic Kind = "static fs metadata"
	// KindJournal: the journal (ext4) or log (XFS) held on the data device.
	KindJournal Kind = "journal"
	// KindPerAG: XFS per-AG metadata: the free-space btrees, the reverse
	// mapping btree and the AG free list.
	KindPerAG Kind = "per-AG metadata"
	// KindInodeBtree: XFS inode btrees (inobt, finobt).
	KindInodeBtree Kind = "inode btree"
	// KindInodes: inode records (XFS inode chunks, the ext4 inode tables).
	KindInodes Kind = "inodes"
	// KindRefcount: the XFS reference count btree.
	KindRefcount Kind = "refcount btree"
	// KindCOW: XFS copy-on-write staging extents.
	KindCOW Kind = "cow staging"
	// KindDefective: blocks the filesystem has marked bad.
	KindDefective Kind = "defective blocks"
	// KindGroupDesc: ext4 group descriptors.
	KindGroupDesc Kind = "group descriptors"
	// KindReservedGDT: ext4 blocks reserved for growing the group descriptors.
	KindReservedGDT Kind = "reserved gdt blocks"
	// KindBlockBitmap: ext4 block bitmaps.
	KindBlockBitmap Kind = "block bitmap"
	// KindInodeBitmap: ext4 inode bitmaps.
	KindInodeBitmap Kind = "inode bitmap"
	// KindDirectory: the blocks of a directory (its entries); Path names it.
	KindDirectory Kind = "directory"
	// KindExtentMap: the extent-tree (XFS bmbt) blocks of a file; Path names it.
	KindExtentMap Kind = "extent map"
	// KindXattr: a file's extended attribute blocks (XFS attribute fork);
	// Path names it.
	KindXattr Kind = "extended attributes"
	// KindMetadata: in use, not a file's data, and nothing more is known;
	// Detail says what is.
	KindMetadata Kind = "metadata"
	// KindBeyond: sectors of the device past the filesystem's end.
	KindBeyond Kind = "beyond the filesystem"
)
