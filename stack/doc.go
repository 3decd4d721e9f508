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
// Reads and writes go through Device.ReadAt and Device.WriteAt. Each level
// finds its segment through an implicit B-tree over segment ends, maps, and
// the bytes are copied straight between the caller's buffer and the leaf.
// Table swaps are atomic with respect to I/O: Suspend waits for every I/O in
// flight and holds new I/O until Resume.
//
// Concurrency: a Pool is safe for concurrent use. Graph changes serialise
// on the pool; I/O takes no pool lock.
package stack
