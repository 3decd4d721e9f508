// Package fsfiles says which files, byte ranges and metadata lie on a
// block device's bad sectors: the last step from "leaf sectors lost" to
// "file X, bytes a–b".
//
// There are few nouns. An FS is the filesystem mounted on one block
// device (found in mountinfo by major:minor; of several mounts of it, a
// mount of its root, else the bind mount nearest its root; a mount point
// covered by another mount is skipped). Lookup takes a set of the device's
// 512-byte sectors, an extent.Set of any number of strided runs (a lost
// leaf is a handful, never enumerated), and returns a Result: FileRange
// entries (a file's inode, every name it has, the bytes on bad sectors,
// strided when the bad set is), MetadataRange entries (a Kind such as
// "journal", "inodes", "directory" with the directory's path, "extent
// map" with the file's) and free runs, sorted, coalesced and capped. A
// Cache keeps one FS per device for the daemon.
//
// How sectors become files depends on what the filesystem answers.
//   - GETFSMAP with owners (XFS with reverse-mapping btrees, mkfs.xfs -m
//     rmapbt=1) names the inode and file offset of every block, and
//     metadata by kind, as xfs_scrub and the kernel's notify_failure use
//     it. The FS then keeps only the names of the tree, from one walk of
//     the directories.
//   - Elsewhere (ext4, XFS without rmapbt, any filesystem with FIEMAP) one
//     walk of the tree maps every file and directory (FIEMAP; XFS_IOC_
//     GETBMAPX for XFS directories, which have no FIEMAP) into an index of
//     extents. A Lookup searches it first; GETFSMAP, where the filesystem
//     has it, then says which of the rest is free space and which
//     metadata it knows (ext4's group descriptors, bitmaps, inode tables;
//     XFS only tells free from used without rmapbt). What is still
//     unplaced is matched against what the layout places (the ext4
//     journal from the superblock, the extent-tree blocks of files whose
//     trees leave the inode read through the device's page cache, the XFS
//     log, AG headers and inode chunks from the geometry and
//     XFS_IOC_INUMBERS), and the remainder is "metadata" with what is
//     known.
//
// The index is built once (by the first Lookup, or Prepare) and kept
// current, never rebuilt per lookup: a fanotify mark on the whole
// filesystem (FAN_MARK_FILESYSTEM, events by file handle, so nothing is
// held open and unmounting is not hindered) reports every write, truncate,
// create, unlink and rename; a Lookup applies what came since the last one
// and maps again the files that changed. Data not placed yet (delayed
// allocation) is mapped again at each lookup until writeback places it,
// without forcing a sync. Writes through a shared mapping raise no event
// until the file's last reference goes, so a lookup that finds used
// sectors nothing explains maps again the files open for writing. An
// overflowing event queue, or a filesystem fanotify cannot watch, makes
// the next Lookup walk again.
//
// Names come from the walk and the events: every hard link of a file is
// listed; an unlinked file still open is found through /proc (its
// descriptors and mappings) and said "(deleted, open by pid N)"; an
// unlinked file whose blocks the filesystem has not freed yet (XFS frees
// in the background) "(deleted, being freed)".
//
// The mount in use is checked at every Lookup (the mount table is read
// again only when poll(2) says it changed): a filesystem unmounted and
// mounted again, which the mountinfo ID does not tell, is told by the
// unique mount ID (Linux 6.8) or, before, by the filesystem's sysfs
// directory, which ext4 and XFS make anew at each mount; then everything
// is learnt again.
//
// Ranges are exact to the sector, in the file's bytes, and not cut at the
// end of the file. A Lookup is bounded: Options.MaxPieces pieces gathered
// at most, and the caller's limit on entries, with Truncated said.
//
// Above it, control.Files resolves a device to its block device and bad
// ranges, `daxstack files` prints the answer, and the daemon follows an
// event of a device with a mounted filesystem with an event of kind files
// (package service). Package fstest makes the real filesystems of the
// tests and finds where their files lie with other tools.
//
// Errors match ErrNotMounted, ErrUnsupported, ErrClosed, ErrMalformed and
// the kernel's errno through errors.Is, and carry the device in a
// *DeviceError. An FS needs root (GETFSMAP, open_by_handle_at, /proc of
// other processes, the walk of every directory).
package fsfiles
