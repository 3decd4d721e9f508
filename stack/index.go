package stack

import "math"

// The lookup index is the kernel's implicit B-tree (dm-table.c
// setup_indexes / dm_table_find_target): the leaf level is the array of
// segment ends ("highs"), eight keys to a 64-byte node, and each level above
// holds, for every child but the last, the highest key under it. A lookup
// reads one cache line per level and returns the first segment whose last
// sector is at or after the sector asked for.
const (
	keysPerNode     = 8
	childrenPerNode = keysPerNode + 1
)

type index struct {
	depth  int
	counts []int      // nodes per level, root first
	levels [][]uint64 // keys per level, root first; the last level is the highs
	n      int        // number of segments
}

func newIndex(highs []uint64) index {
	ix := index{n: len(highs)}
	if len(highs) == 0 {
		return ix
	}
	leafNodes := (len(highs) + keysPerNode - 1) / keysPerNode
	ix.depth = 1 + intLog(leafNodes, childrenPerNode)
	ix.counts = make([]int, ix.depth)
	ix.counts[ix.depth-1] = leafNodes
	for l := ix.depth - 2; l >= 0; l-- {
		ix.counts[l] = (ix.counts[l+1] + childrenPerNode - 1) / childrenPerNode
	}
	ix.levels = make([][]uint64, ix.depth)
	leaf := make([]uint64, leafNodes*keysPerNode)
	copy(leaf, highs)
	for i := len(highs); i < len(leaf); i++ {
		leaf[i] = math.MaxUint64
	}
	ix.levels[ix.depth-1] = leaf
	for l := ix.depth - 2; l >= 0; l-- {
		keys := make([]uint64, ix.counts[l]*keysPerNode)
		for n := 0; n < ix.counts[l]; n++ {
			for k := 0; k < keysPerNode; k++ {
				keys[n*keysPerNode+k] = ix.high(l+1, n*childrenPerNode+k)
			}
		}
		ix.levels[l] = keys
	}
	return ix
}

// high returns the highest key in the subtree of node n at level l.
func (ix *index) high(l, n int) uint64 {
	for ; l < ix.depth-1; l++ {
		n = n*childrenPerNode + childrenPerNode - 1
	}
	if n >= ix.counts[ix.depth-1] {
		return math.MaxUint64
	}
	return ix.levels[ix.depth-1][n*keysPerNode+keysPerNode-1]
}

// find returns the index of the first segment whose high is >= sector.
// The caller has checked sector < table size, so one always exists.
func (ix *index) find(sector uint64) int {
	n, k := 0, 0
	for l := 0; l < ix.depth; l++ {
		n = n*childrenPerNode + k
		node := ix.levels[l][n*keysPerNode : n*keysPerNode+keysPerNode : n*keysPerNode+keysPerNode]
		k = 0
		for k < keysPerNode && node[k] < sector {
			k++
		}
	}
	return n*keysPerNode + k
}

// intLog returns ceil(log_base(n)), the kernel's int_log.
func intLog(n, base int) int {
	result := 0
	for n > 1 {
		n = (n + base - 1) / base
		result++
	}
	return result
}
