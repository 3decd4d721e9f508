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
