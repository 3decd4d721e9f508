// Package linear is the linear target: a segment maps onto a contiguous
// range of one child device, as the kernel's dm-linear.
//
//	<start> <length> linear <device> <offset>
//
// Sector s of the segment is sector offset+s of the device. Importing the
// package registers the target with stack.
package linear

import (
	"strconv"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func init() {
	stack.Register(stack.TargetType{Name: "linear", Version: [3]uint32{1, 4, 0}, New: New})
}

type linear struct {
	dev   *stack.Dev
	start uint64
	len   uint64
}

// New is the constructor: exactly two arguments, the kernel's checks in
// its order ("Invalid argument count", "Invalid device sector", "Device
// lookup failed").
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) != 2 {
		return nil, stack.Errorf("Invalid argument count", nil)
	}
	start, ok := stack.ParseSector(args[1])
	if !ok {
		return nil, stack.Errorf("Invalid device sector", nil)
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return nil, stack.Errorf("Device lookup failed", err)
	}
	return &linear{dev: dev, start: start, len: ti.Len}, nil
}

func (l *linear) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Dev: l.dev, Sector: l.start + off, Run: l.len - off}, nil
}

// Rmap returns at most one extent: the part of the given sectors inside
// [start, start+len), moved back by start.
func (l *linear) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != l.dev {
		return extent.Set{}
	}
	return s.Clip(l.start, l.start+l.len).Shift(-int64(l.start))
}

func (l *linear) Areas() []stack.Area {
	return []stack.Area{{Dev: l.dev, Start: l.start, Len: l.len}}
}

// Split moves the offset: any cut of a linear segment is linear.
func (l *linear) Split(off, n uint64) (string, error) {
	return l.dev.Ref() + " " + strconv.FormatUint(l.start+off, 10), nil
}

func (l *linear) Table() string  { return l.dev.Ref() + " " + strconv.FormatUint(l.start, 10) }
func (l *linear) Status() string { return "" }
