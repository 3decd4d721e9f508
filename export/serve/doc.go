// Package serve runs the exports of a daemon's engine: while it runs,
// every live mapped device is a device file in a FUSE mount
// (export/devfs), a block device over that file with links by name
// (export/blockdev) and an NBD export (package nbd), and they follow the
// devices through create, remove, rename, table swaps (size), suspend and
// resume, and read-only.
//
// The nouns:
//
//   - Options say what to export and where: the mount (default
//     /run/daxstack/dev, or none), the links (/dev/daxstack, and
//     /dev/mapper by MapperLinks), the NBD unix socket (default
//     /run/daxstack/nbd.sock) and an optional TCP listener, which needs
//     TLS with verified client certificates unless Insecure.
//   - Exports is the running set. Start hooks it into the engine
//     (control.Engine.Watch and control.Hooks) and exports the devices
//     live at that moment; Close tears everything down.
//   - A device's export is one internal handle of the engine
//     (OpenInternal: not a user), shared by its device file and by every
//     NBD connection to it.
//
// How it follows the engine. The engine tells its watchers each commit's
// lifecycle changes with its lock held; Exports only queues them, and a
// worker applies them in order. The engine's Settle hook, at the end of
// every command, waits (bounded) until the worker has applied everything
// queued so far: create, resume, rename and remove return when the block
// device and its links are in place or gone, as dmsetup does with udev.
//
// Hooks:
//
//   - BeforeRemove: a device in use (a mounted filesystem or another
//     exclusive opener of the block device, a client's open of the device
//     file, an NBD connection) refuses the removal (stack.ErrBusy); then
//     Exports watches the device and tells the engine (Engine.Unused) when
//     its last user went, which is when a remove --deferred happens.
//     Otherwise the export is torn down before the engine removes the
//     device (and put back if the removal then fails).
//   - Freeze and Thaw: FIFREEZE and FITHAW of a filesystem mounted from
//     the block device, for a suspend without --nolockfs.
//   - BlockDev names the block device for info.
//   - Export refuses a table naming one of the exports (a link, the loop
//     device or its number, a device file, an NBD URI of the socket): its
//     I/O would go out through the kernel and back into the daemon.
//
// A device used by another table is claimed (its block device held with
// O_EXCL) while the table above lives, so that it cannot be mounted
// meanwhile.
//
// NBD exports carry two meta contexts: base:allocation, where the zero
// target's segments are holes that read as zeros and everything else is
// data, and daxstack:badblocks, flag 1 on exactly the device's bad
// ranges (the set `daxstack badblocks` prints). The unix socket is mode
// 0660, root and the daemon's group, and a peer must be root or in that
// group, as on the daemon's socket.
package serve
