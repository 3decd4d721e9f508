// Package blockdev gives every device file of an export/devfs mount a
// block device: a loop device over the file in direct-I/O mode, so that
// nothing is cached between the block device and the mapped device, and
// links to it by name, as udev makes /dev/mapper/NAME for device-mapper.
//
// The nouns:
//
//   - Manager owns the block devices of one devfs mount. Add makes the
//     device file and its block device and links in one step (all or
//     nothing); Remove, Rename, Resize and SetReadOnly follow the device;
//     Close tears every export down.
//   - Export is one device's block device: its loop (LO_FLAGS_DIRECT_IO,
//     512-byte logical blocks, read-only through BLKROSET while the device
//     is, capacity set again by LOOP_SET_CAPACITY after a resize) and its
//     links: LinkDir/NAME (/dev/daxstack/NAME) and, on a kernel without
//     device-mapper (no /dev/mapper/control) or when asked,
//     MapperDir/NAME. A link name that exists and is not one of daxstack's
//     is an error for that export, never taken over.
//   - Usage says who uses a block device, as dmsetup's open count would:
//     filesystems mounted from it (mountinfo), holders in sysfs, another
//     process holding it exclusively (an O_EXCL probe fails with EBUSY),
//     clients with the device file open (devfs). Remove refuses a device
//     in use with a *BusyError unless forced. Openers the kernel does not
//     show are invisible: a process that opened the block device without
//     O_EXCL (a plain `dd if=/dev/daxstack/NAME`) does not make it busy;
//     Remove then detaches the loop when that process closes it (the
//     loop driver's autoclear) and says so (Removed.Deferred).
//   - A claim (Claim) holds the block device open with O_EXCL, so that it
//     cannot be mounted or opened exclusively while a table above uses the
//     device. Apart from claims, a Manager never keeps a block device open
//     (a block device held open keeps its page cache after its last user
//     closes it, and a later reader could see pages that never reached the
//     device).
//   - Freeze and Thaw are FIFREEZE and FITHAW on a filesystem mounted from
//     the block device, for a suspend that locks the filesystem (dmsetup
//     suspend without --nolockfs). Freeze before suspending the device (the
//     freeze writes back through it), thaw after resuming it.
//   - Resolve tells whether a path or "major:minor" names one of the
//     exports (a link, the loop node or its number, the device file), so
//     that a table naming one is resolved to the mapped device itself and
//     no I/O goes out through the kernel and back in.
//   - CleanLeftovers, at start, finds what a dead daemon left: loop
//     devices over files of its devfs mount (marked in lo_file_name) and
//     links to them or to detached loops. It detaches the loops (at once,
//     or when their last opener closes) and removes the links. A
//     filesystem still mounted on a dead daemon's loop gets EIO for every
//     I/O (its FUSE server is gone); it must be unmounted and mounted again
//     on the new export.
//
// Manager methods do I/O through the device (LOOP_CONFIGURE flushes the
// file, Freeze writes a filesystem back): call them without holding locks
// the Device's methods need.
package blockdev
