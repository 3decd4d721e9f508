package stack

// Leaf is a device at the bottom of a stack: a pmem or device-dax device,
// another block device, or a regular file that emulates pmem. The dax
// package provides the real implementation; tests use in-memory leaves.
//
// Offsets for ReadAt and WriteAt are in bytes from the start of the leaf.
// Errors from them are returned to the caller of the mapped device's I/O
// unchanged, so a leaf reporting poison should return an error that
// errors.Is(err, syscall.EIO) and says which sectors are bad.
type Leaf interface {
	// ID is a stable identity: the same device seen through another path,
	// or re-opened later, has the same ID.
	ID() string
	// Ref is how a table names the leaf when it is printed: major:minor for
	// a block device, the absolute path otherwise.
	Ref() string
	// Name is the short name used in kernel-style messages (pmem1, loop0,
	// or the path of a file).
	Name() string
	// Size is the leaf's size in 512-byte sectors.
	Size() uint64
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// LeafOpener resolves a reference from a table (a path, or major:minor of a
// block device) to a Leaf. It is called with the reference as the user wrote
// it; the pool deduplicates leaves by ID.
type LeafOpener func(ref string) (Leaf, error)

// Leaves may implement the interfaces below; the I/O path uses them when
// they do.

// LeafSyncer is implemented by leaves whose writes need a step to become
// durable (msync of a mapping, fdatasync of a file). A flush through a
// stack calls Sync on every leaf under the device; a FUA write calls it on
// the leaves the write touched. A leaf without it is durable as written.
type LeafSyncer interface {
	Sync() error
}

// LeafZeroer is implemented by leaves that write zeros without a buffer of
// them. WriteZeroesAt writes n zero bytes at byte off and, like any write,
// clears the poison of the sectors it covers whole. Without it the I/O path
// writes zeros with WriteAt.
type LeafZeroer interface {
	WriteZeroesAt(off, n int64) (int64, error)
}

// LeafDiscarder is implemented by leaves that really discard (punch a hole
// in a file, BLKDISCARD on a device). A discard is a hint: without it the
// I/O path does nothing at the leaf, and data and poison stay as they were.
type LeafDiscarder interface {
	DiscardAt(off, n int64) error
}
