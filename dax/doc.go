// Package dax opens the leaves of daxstack stacks — pmem block devices,
// device-dax character devices, other block devices and regular files that
// emulate pmem — and gives byte-addressed, poison-aware access to them.
//
// There are two types. An Opener says where sysfs and /dev are (so tests
// can supply fake trees) and who hears about poison changes; its Open
// resolves a reference — a path, or "major:minor" of a block device — to a
// Leaf. A Leaf is one device or file: its identity (ID, Ref, Name, Kind,
// Path, Identity), its Size in 512-byte sectors, ReadAt and WriteAt in
// bytes, and its poison list. *Leaf implements stack.Leaf and the optional
// BadBlocks and Lost methods the reverse map uses, without this package
// importing either.
//
// Opening is cheap: it stats the reference and reads a few sysfs
// attributes. Nothing is opened or mapped until the first I/O, which opens
// the device or file read-write (read-only when that is refused), checks
// that it is still the object that was stat'ed, and maps it whole with
// mmap(MAP_SHARED), asking for MAP_SYNC first. ReadAt and WriteAt copy
// straight between the caller's buffer and the mapping. Every copy runs
// with debug.SetPanicOnFault, so a SIGBUS — a file truncated under the
// mapping, or a real media error — becomes an error matching syscall.EIO
// instead of a crash. Sync flushes the mapping with msync; Close waits for
// the I/O in flight, unmaps and closes.
//
// Poison is a set of bad sectors. A pmem block device whose kernel keeps a
// badblocks list (<sysfs>/block/pmemN/badblocks) uses that list
// (PoisonSource "sysfs"): Inject writes "start count" lines to it, and a
// write over bad sectors (or Clear) goes to the device with O_DIRECT so the
// pmem driver clears them, after which the list is read again. Such a
// device is mapped through the page cache, and the kernel fails a whole
// page when one of its sectors is bad, so the good sectors of a page that
// holds a bad one are moved with O_DIRECT sector I/O through an aligned
// bounce buffer instead of the mapping. A device-dax device reads the
// badblocks of its nd region, translated to its own range, when sysfs shows
// how; that list belongs to the kernel (ndctl inject-error and clear-errors
// change it), so Inject and Clear refuse with ErrKernelList. Every other leaf keeps an emulated list in
// memory (PoisonSource "emulated"); saving it is the caller's business:
// SetPoison restores it, and Opener.OnPoison hears every change the leaf
// makes (injection, and writes or Clear that clear sectors).
//
// Poison behaves as on pmem, at byte granularity: a read that touches a
// bad sector copies the bytes before it and fails with a *PoisonError
// (which matches syscall.EIO) naming the leaf and the bad extent; bytes next
// to a bad sector read normally. A write that covers bad sectors whole
// clears them; a write that covers a bad sector only in part fails with a
// *PoisonError and changes nothing.
//
// A leaf can be marked lost (SetLost) when its device goes away: it keeps
// its last Size and fails I/O with an error matching syscall.ENXIO. Missing
// makes such a leaf for a device recorded earlier that cannot be opened.
// OpenKnown opens a recorded leaf, refusing another object at its path
// (ErrChanged: lost, never used) and keeping the recorded size; Find looks
// for a recorded block device among those present now (a loop device
// re-attached at another number, by its backing file).
//
// A leaf whose file or device got smaller keeps its Size (what its tables
// were checked against): the sectors past its current end (CurrentSize)
// are Truncated, and I/O reaching them fails with a *TruncatedError naming
// them, never a SIGBUS. Recheck looks at a leaf's path and size again for
// a rescan; a leaf that grows back works again through the same mapping.
//
// Access says how a leaf's bytes are reached, found out once per mapping
// from the kernel (the mapping's VmFlags in /proc/self/smaps, "sf" being
// MAP_SYNC in force, and the inode's DAX attribute): AccessDAXSync,
// AccessDAX, AccessPageCache (every block device, a raw pmem namespace
// included), or AccessPread for a leaf that cannot be mapped (too large
// for the address space, a file system without mmap) or whose Opener asks
// for pread; Report gathers what a report of leaves shows.
//
// Opener.Claim makes Open refuse a block device that is mounted or held
// exclusively by someone else (ClaimCheck), and, with ClaimHold, keep it
// open with O_EXCL until Close, as device-mapper claims its children, so
// that nobody can mount it under a live table (EBUSY). A ClaimHold leaf
// opens its device at Open for the claim; its I/O still opens and maps
// it on first use, without O_EXCL.
//
// A pmem or device-dax leaf's identity carries its nd namespace's UUID
// (through the pfn, btt or nd dax device the kernel sets up over a fsdax,
// sector or devdax namespace, whose own UUID is new at every
// create-namespace), so a namespace made again with the same --uuid is the
// same leaf.
//
// For a caller acting for someone else (the daemon, for a client),
// Resolve says which path Open will stat for a reference, and Leaf.Is
// whether the leaf opened is the very object a descriptor opened by the
// client is (the same file, or the same device node).
//
// A Leaf is safe for concurrent use. The I/O path takes no lock and shares
// no counter between goroutines unless poison is involved.
package dax
