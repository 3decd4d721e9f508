// Package stacktest provides in-memory leaves and random stacks for tests
// and benchmarks of the stack, its targets and the reverse map.
package stacktest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// MemLeaf is a leaf held in memory, with an emulated poison list: reads
// touching a poisoned sector fail with EIO, writes covering whole poisoned
// sectors clear them. It implements stack.Leaf.
type MemLeaf struct {
	id, ref, name string
	data          []byte
	size          uint64 // sectors; may exceed len(data)/512 for sparse leaves

	mu       sync.RWMutex
	poison   extent.Set
	lost     bool
	syncs    atomic.Int64
	discards atomic.Int64
}

// Sync counts a flush reaching the leaf (stack.LeafSyncer).
func (l *MemLeaf) Sync() error {
	l.syncs.Add(1)
	return nil
}

// Syncs returns how many times Sync was called.
func (l *MemLeaf) Syncs() int { return int(l.syncs.Load()) }

// DiscardAt counts a discard reaching the leaf (stack.LeafDiscarder) and
// changes nothing: a discard is a hint, and the leaf keeps its data and
// its poison, as a device that does not really discard.
func (l *MemLeaf) DiscardAt(off, n int64) error {
	l.discards.Add(1)
	return nil
}

// Discards returns how many times DiscardAt was called.
func (l *MemLeaf) Discards() int { return int(l.discards.Load()) }

// NewMemLeaf returns a leaf of sectors sectors. If sparse is true no
// memory is allocated and the leaf can only be used for mapping, not I/O.
func NewMemLeaf(ref, name string, sectors uint64, sparse bool) *MemLeaf {
	l := &MemLeaf{id: "mem:" + ref, ref: ref, name: name, size: sectors}
	if !sparse {
		l.data = make([]byte, sectors*stack.SectorSize)
	}
	return l
}

func (l *MemLeaf) ID() string   { return l.id }
func (l *MemLeaf) Ref() string  { return l.ref }
func (l *MemLeaf) Name() string { return l.name }
func (l *MemLeaf) Size() uint64 { return l.size }

// Data returns the leaf's bytes (nil for a sparse leaf).
func (l *MemLeaf) Data() []byte { return l.data }

// BadBlocks returns the poisoned sectors.
func (l *MemLeaf) BadBlocks() extent.Set {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.poison
}

// Poison marks sectors bad.
func (l *MemLeaf) Poison(s extent.Set) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.poison = l.poison.Union(s)
}

// SetLost marks the leaf gone (every sector fails) or back.
func (l *MemLeaf) SetLost(lost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = lost
}

// Lost reports whether the leaf is gone.
func (l *MemLeaf) Lost() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lost
}

// PoisonError is a read that touched poisoned sectors of a MemLeaf.
type PoisonError struct {
	Leaf string
	Bad  extent.Extent
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("%s: media error at sectors %v: input/output error", e.Leaf, e.Bad)
}

// Is makes a PoisonError match syscall.EIO.
func (e *PoisonError) Is(target error) bool { return target == syscall.EIO }

func (l *MemLeaf) ReadAt(p []byte, off int64) (int, error) {
	if l.data == nil || off < 0 || off+int64(len(p)) > int64(len(l.data)) {
		return 0, syscall.EIO
	}
	l.mu.RLock()
	lost, poison := l.lost, l.poison
	l.mu.RUnlock()
	if lost {
		return 0, fmt.Errorf("%s: %w", l.name, syscall.ENXIO)
	}
	if !poison.Empty() {
		first, last := uint64(off)/512, (uint64(off)+uint64(len(p))+511)/512
		bad := poison.Clip(first, last)
		if !bad.Empty() {
			b := bad.Runs()[0].First()
			n := copy(p, l.data[off:max(off, int64(b.Start*512))])
			return n, &PoisonError{Leaf: l.name, Bad: b}
		}
	}
	return copy(p, l.data[off:]), nil
}

func (l *MemLeaf) WriteAt(p []byte, off int64) (int, error) {
	if l.data == nil || off < 0 || off+int64(len(p)) > int64(len(l.data)) {
		return 0, syscall.EIO
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return 0, fmt.Errorf("%s: %w", l.name, syscall.ENXIO)
	}
	if !l.poison.Empty() {
		lo, hi := uint64(off), uint64(off)+uint64(len(p))
		whole := l.poison.Clip((lo+511)/512, hi/512)
		l.poison = l.poison.Subtract(whole)
		if partial := l.poison.Clip(lo/512, (hi+511)/512); !partial.Empty() {
			return 0, &PoisonError{Leaf: l.name, Bad: partial.Runs()[0].First()}
		}
	}
	return copy(l.data[off:], p), nil
}

// Opener returns a stack.LeafOpener that resolves references to the given
// leaves by their Ref.
func Opener(leaves ...*MemLeaf) stack.LeafOpener {
	byRef := map[string]*MemLeaf{}
	for _, l := range leaves {
		byRef[l.ref] = l
	}
	return func(ref string) (stack.Leaf, error) {
		if l, ok := byRef[ref]; ok {
			return l, nil
		}
		return nil, fmt.Errorf("lookup %s: %w", ref, syscall.ENOENT)
	}
}
