// Package linux is the small set of kernel calls the exports make: loop
// devices, block-device probes, the mount table and filesystem freezing.
// It knows nothing of daxstack's devices; export/blockdev puts it to use.
//
// The nouns:
//
//   - Dev is a device number (major:minor), as in st_rdev and mountinfo.
//   - Loop is an attached loop device: its number, node and Dev.
//     AttachLoop configures one over an open file in a single
//     LOOP_CONFIGURE (direct I/O, logical block size, read-only, a Tag in
//     lo_file_name that says who made it); LoopStatus reads it back;
//     DetachLoop is LOOP_CLR_FD with the kernel's autoclear semantics (a
//     loop nobody else holds open detaches at once, one still held
//     detaches when its last opener closes, and DetachLoop says which);
//     SetCapacity is LOOP_SET_CAPACITY after the backing file's size
//     changed; Loops lists the attached loops from sysfs.
//   - Block-device calls: Size (BLKGETSIZE64), SetReadOnly (BLKROSET),
//     ProbeExclusive (an O_EXCL open: EBUSY while a filesystem is mounted
//     on the device or another process holds it exclusively), OpenExclusive
//     (the same open, kept: a claim), Holders (sysfs holders/).
//   - Mount is one line of /proc/self/mountinfo; MountsOf finds the
//     filesystems mounted from a Dev. Freeze and Thaw are FIFREEZE and
//     FITHAW on a mount point.
//
// Caveats. Only what the kernel shows is seen: a process that opened a
// block device without O_EXCL (a plain dd) is in no table, and neither
// sysfs nor the loop driver reports it except by deferring a detach; a
// mount in another mount namespace is not in this process's mountinfo
// (the O_EXCL probe still sees it, as the filesystem holds the device
// exclusively).
package linux
