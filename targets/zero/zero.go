// Package zero is the zero target: reads return zeros and writes are
// dropped, as the kernel's dm-zero.
//
//	<start> <length> zero
//
// It has no child device. Importing the package registers the target with
// stack. It is not a DAX target in the kernel; daxstack carries it so that
// tables such as the kernel oracle's load unchanged.
package zero

import (
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func init() {
	stack.Register(stack.TargetType{Name: "zero", Version: [3]uint32{1, 2, 0}, New: New})
}

type zero struct{ len uint64 }

// New is the constructor: no arguments ("No arguments required").
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) != 0 {
		return nil, stack.Errorf("No arguments required", nil)
	}
	return &zero{len: ti.Len}, nil
}

func (z *zero) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Run: z.len - off}, nil
}

// Split: a piece of a zero segment is a zero segment.
func (z *zero) Split(off, n uint64) (string, error) { return "", nil }

func (z *zero) Rmap(*stack.Dev, extent.Set) extent.Set { return extent.Set{} }
func (z *zero) Areas() []stack.Area                    { return nil }
func (z *zero) Table() string                          { return "" }
func (z *zero) Status() string                         { return "" }
