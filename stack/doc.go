// Package stack is daxstack's device-mapper: tables, the target registry,
// mapped devices, the device graph and the I/O path.
//
// There are only a few types. A Pool holds every device daxstack knows.
// A Dev is a node of the device graph: either a Leaf (a real or emulated DAX
// device, supplied by the caller through an opener) or a mapped Device. A
// Device has a name, an optional UUID, and two table slots, active and
// inactive, as in the kernel: Load fills the inactive slot and Resume swaps it
// in. A Table is contiguous Segments starting at sector 0; each Segment holds a
// Target built by the constructor registered for its type.
//
// Targets register themselves (Register, in an init function) the way
// database/sql drivers do; this package never imports one. The Target
// contract is the kernel's struct target_type seen from user space: a
// constructor that validates its arguments with the kernel's words, Map
// (down), Rmap (up), Areas (iterate_devices) and the Table and Status lines.
//
// Tables are parsed as dmsetup and the kernel parse them: ParseText splits
// lines like dmsetup's _parse_line, and Pool.Build runs the kernel's checks
// in the kernel's order (zero length, unknown type, "Gap in table", argument
// splitting, the constructor, then every child area against its device's
// size). Errors carry the device, line and target type (see TableError).
//
// I/O goes through Device.Do (reads, writes, write-zeroes, discards),
// Device.Flush, and Device.ReadAt and WriteAt, and the bytes are copied
// straight between the caller's buffer and the leaf. Every mapped device
// has a compiled map (Compiled): its table flattened through every level
// below it into one sorted list of pieces, built at each table swap of the
// device or of any device below it, before the swap's resume returns, and
// published to the I/O path while nothing under it is suspended (see
// CompiledMaps and compiled_pool.go). A request through a published map
// makes one lookup per contiguous piece, whatever the number of levels.
// Without one (a device below is suspended, or SetCompiledMaps turned them
// off) each level finds its segment through an implicit B-tree over
// segment ends and maps: levels whose targets only place sectors (linear,
// striped, zero) take the fast path, one lookup per level per contiguous
// piece, the mapping remembered, no other call. At a target with run-time
// behaviour (IOMapper, Delayer, OpMapper, an EndIOer) the request goes as
// the kernel's bios go, compiled map or not: one Bio per segment (and per
// MaxIOLen window), then split below. Walks that are not I/O (Trace,
// MapRange) take the per-level steps and so agree with it on every
// sector; the compiled maps are tested to agree with them.
//
// Table swaps are atomic with respect to I/O: Suspend waits for every
// request in flight through the device (those held in a delay below it
// included) and holds new ones until Resume. Waits never hold the pool's
// lock, so one device's slow I/O never stops another's suspend.
//
// The pool owns the leaves: it opens each once, counts what refers to it
// (tables, claims, AcquireLeaf) and closes it when nothing does. A Txn
// records the pool's changes so that a command that fails can undo them
// all; tables leave (Destructor) only when it commits.
//
// Concurrency: a Pool is safe for concurrent use. Graph changes serialise
// on the pool; I/O takes no pool lock.
package stack
