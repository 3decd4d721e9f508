package dax

// Flushing a device-dax mapping. Device-dax has no fsync: the kernel
// refuses msync on its mappings (EINVAL), because there is nothing for it
// to write back. Stores to such a mapping reach the memory through the
// CPU caches, and it is the program's job to write the cache lines back
// (what PMDK's pmem_persist does): CLWB where the CPU has it, else
// CLFLUSHOPT, else CLFLUSH, then a store fence. On platforms whose caches
// are inside the persistence domain (eADR) this is redundant, and cheap.

import (
	"fmt"
	"sync"
	"unsafe"
)

// cacheLine is the granule the flush instructions work on.
const cacheLine = 64

// flushOp says which instruction flushCPU uses (see cpuflush_amd64.s).
const (
	flushNone       = iota // no instruction: not supported here
	flushCLFLUSH           // CLFLUSH: write back and evict, serialised
	flushCLFLUSHOPT        // CLFLUSHOPT: write back and evict, unordered
	flushCLWB              // CLWB: write back, the line may stay cached
)

var flushKind = sync.OnceValue(cpuFlushKind)

// writeBack writes back the CPU cache lines of b to memory and waits for
// them (store fence): what makes stores to a device-dax mapping durable.
func writeBack(b []byte) error {
	k := flushKind()
	if k == flushNone {
		return fmt.Errorf("no cache line write-back instruction on this CPU: %w", ErrUnsupported)
	}
	if len(b) == 0 {
		return nil
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b))) &^ (cacheLine - 1)
	end := uintptr(unsafe.Pointer(unsafe.SliceData(b))) + uintptr(len(b))
	flushLines(start, (end-start+cacheLine-1)/cacheLine, k)
	return nil
}

// syncDevdax is Sync for a device-dax leaf's mapping: the cache lines of
// the mapping written back (msync is refused there: see above).
func (l *Leaf) syncDevdax(m *mapping) error {
	if err := writeBack(m.data); err != nil {
		return leafError(l.name, pathErr("flush", l.path, err))
	}
	return nil
}
