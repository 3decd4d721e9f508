// Package errtarget (directory targets/error) is the error target: every I/O to the segment fails with
// EIO, as the kernel's dm-error.
//
//	<start> <length> error
//	<start> <length> error <device> <offset>
//
// With two arguments (the form fstests uses) the device is opened and
// counted as a dependency, like dm-linear, but never read or written. Any
// other number of arguments is ignored, as the kernel does. Importing the
// package registers the target with stack.
package errtarget

import (
	"strconv"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func init() {
	stack.Register(stack.TargetType{Name: "error", Version: [3]uint32{1, 7, 0}, New: New})
}

type errTarget struct {
	dev   *stack.Dev // nil without arguments
	start uint64
	len   uint64
}

// New is the constructor.
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	t := &errTarget{len: ti.Len}
	if len(args) == 2 {
		start, ok := stack.ParseSector(args[1])
		if !ok {
			return nil, stack.Errorf("Invalid device sector", nil)
		}
		dev, err := ti.GetDevice(args[0])
		if err != nil {
			return nil, stack.Errorf("Device lookup failed", err)
		}
		t.dev, t.start = dev, start
	}
	return t, nil
}

// Map fails every sector to the end of the segment.
func (t *errTarget) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Run: t.len - off}, stack.ErrKill
}

// Failing returns the whole segment: every sector of it fails.
func (t *errTarget) Failing() extent.Set {
	return extent.Of(extent.Extent{Start: 0, Len: t.len})
}

// Split: a piece of an error segment is an error segment, over the same
// device (if any) at the moved offset.
func (t *errTarget) Split(off, n uint64) (string, error) {
	if t.dev == nil {
		return "", nil
	}
	return t.dev.Ref() + " " + strconv.FormatUint(t.start+off, 10), nil
}

// StoredParams keeps the device the kernel does not print: it is still a
// dependency of the table.
func (t *errTarget) StoredParams() string {
	if t.dev == nil {
		return ""
	}
	return t.dev.Ref() + " " + strconv.FormatUint(t.start, 10)
}

// Rmap returns nothing: no sector of the segment holds data of the child.
func (t *errTarget) Rmap(*stack.Dev, extent.Set) extent.Set { return extent.Set{} }

func (t *errTarget) Areas() []stack.Area {
	if t.dev == nil {
		return nil
	}
	return []stack.Area{{Dev: t.dev, Start: t.start, Len: t.len}}
}

// Table and Status are empty: the kernel's error target has no status
// method, so dmsetup prints nothing after the type.
func (t *errTarget) Table() string  { return "" }
func (t *errTarget) Status() string { return "" }
