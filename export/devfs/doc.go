// Package devfs serves mapped devices as regular files in a FUSE mount
// (github.com/hanwen/go-fuse/v2, its wire-level API): one file per
// device, named by the device and sized as it, whose reads and writes are
// the device's I/O.
//
// The nouns:
//
//   - FS is the mount: a flat directory of device files, owned by root and
//     a group, mode 0660 by default, enforced by the kernel
//     (default_permissions with allow_other). Mount makes it; the daemon
//     drives it as devices change: Add, Remove, Rename, Resize,
//     SetReadOnly. Close unmounts it.
//   - Device is what a file serves (ReadAt, WriteAt, WriteZeroes, Discard,
//     Flush, each with a context); the engine's I/O handle implements it
//     through a thin adapter. FUAWriter is an optional extra for
//     synchronous writes.
//   - Attr is a file's size, read-only state and inode number; Info adds
//     who has it open.
//
// What a client sees:
//
//   - No page cache: every open is direct I/O (FOPEN_DIRECT_IO), so a
//     change to the device (a write through another path, an injected
//     error, a clear) shows at once. A shared mmap is refused (ENODEV), as
//     FUSE does for direct-I/O files; a private one is a copy.
//   - A read fails exactly where the device's read fails: the good
//     sectors before a bad one are returned as a short read and the next
//     read fails, so a direct-I/O loop device over the file fails exactly
//     the bad sectors. Writes fail whole.
//   - fsync is the device's Flush; O_SYNC, O_DSYNC and RWF_DSYNC writes are
//     durable at once (FUAWriter, or a write then Flush). fallocate
//     FALLOC_FL_ZERO_RANGE is WriteZeroes; FALLOC_FL_PUNCH_HOLE is
//     WriteZeroes then Discard (a punched range must read as zeros, and a
//     loop device punches for both its discards and its write-zeroes).
//   - A read-only device refuses opens for writing, and writes, with
//     EROFS. Writes past the end fail with ENOSPC; the size can't be
//     changed from outside (EPERM), but open(O_TRUNC) is ignored, as on a
//     block device (and so is truncate(2) by path to 0, which the kernel
//     sends the same way).
//   - A suspended device's I/O waits in the Device; a signal to the
//     waiting process (a FUSE interrupt) ends the wait with EINTR.
//   - Inode numbers are stable: the file keeps its number through renames
//     and resizes, and the daemon can pass the same number across
//     restarts (Attr.Ino).
//
// Users. Every open is counted; an open by daxstack's own plumbing
// (OpenInternal: the file a loop device is bound to) is not a user. The
// kernel names the calling thread in each request, and OpenInternal makes
// its open from a thread it has registered; no other process can have
// that thread id. Info.Users and Users report the rest, and Remove refuses
// a file with users unless forced. A client's close reaches devfs a moment
// after close(2) returns (FUSE sends RELEASE asynchronously).
//
// Renames and removals go through the kernel (rename(2) and unlink(2) on
// the mount, from such a registered thread), so the kernel's dentries
// follow: a loop device bound to a renamed file shows the new name in
// losetup. Clients can't rename, remove or create anything (EPERM).
//
// Tuning (measured in export/blockdev's benchmark): requests up to
// DefaultMaxWrite (1 MiB), DefaultMaxBackground asynchronous
// requests in flight, asynchronous direct I/O (FUSE_ASYNC_DIO) so that a
// loop's requests reach the server in parallel, parallel direct writes
// (FOPEN_PARALLEL_DIRECT_WRITES), no FLUSH at close (FOPEN_NOFLUSH), no
// splice (replies carry the bytes read).
package devfs
