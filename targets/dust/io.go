package dust

import (
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// BlockError is a request that failed on a listed block. It matches
// syscall.EIO, the error the kernel's dm-dust completes it with.
type BlockError struct {
	Op    stack.Op
	Block uint64 // the listed block, in blksz units of the underlying device
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("dust: %s of bad block %d: input/output error", e.Op, e.Block)
}

// Is makes a BlockError match syscall.EIO.
func (e *BlockError) Is(target error) bool { return target == syscall.EIO }

// MapIO is dust_map. In bypass every request goes on. While enabled a
// read fails if the block of the first sector of any of its pieces is
// listed (the pieces are the request cut at every blksz of the segment,
// as the kernel's max_io_len cuts it: each piece is judged by its first
// sector's block only, so an offset that is not a multiple of the block
// size makes a piece straddle two blocks and see one). Every other request
// is a write to dm-dust, which judges a write piece the same way: a
// listed block with a write-fail count left uses one up and fails the
// piece (and so the request, though its other pieces are judged too, as
// the kernel's split bios are), and a listed block with none left leaves
// the list and the piece goes on. Which pieces a request has depends on
// its kind, as in the kernel:
//
//   - reads, writes and write-zeroes are cut at every block (dm-dust does
//     not take write-zeroes; the kernel writes zeroed pages instead);
//   - a discard is not cut (dm sends it whole) and is judged by its first
//     sector;
//   - a flush is an empty write at sector 0 of the mapped device, that is
//     at offset -begin of the segment, which dm-dust moves to device
//     sector offset-begin like any request: for a segment at the start of
//     its table, the flush is judged by the block holding the offset, and
//     a flush can clear that block or use up its count. (A kernel flush
//     that carries data is judged at its data's sector instead; daxstack's
//     flushes carry none.)
//
// A change to the list (a cleared block, a used-up count) is reported with
// TargetInfo.StateChanged, the cleared block's sectors in the segment as
// cleared failing sectors.
func (d *dust) MapIO(b *stack.Bio) (stack.Action, error) {
	d.mu.Lock()
	if !d.enabled || len(d.blocks) == 0 {
		d.mu.Unlock()
		return stack.Remap, nil
	}
	var (
		failed  *BlockError
		changed bool
		cleared extent.Set
	)
	write := func(sector uint64) {
		blk := sector >> d.shift
		n, listed := d.blocks[blk]
		switch {
		case !listed:
		case n > 0:
			d.blocks[blk] = n - 1
			changed = true
			if failed == nil {
				failed = &BlockError{Op: b.Op, Block: blk}
			}
		default:
			delete(d.blocks, blk)
			changed = true
			cleared = cleared.Union(d.blockSet(blk))
		}
	}
	switch b.Op {
	case stack.OpRead:
		d.eachPiece(b, func(s uint64) bool {
			blk := (d.start + s) >> d.shift
			if _, listed := d.blocks[blk]; listed {
				failed = &BlockError{Op: b.Op, Block: blk}
				return false
			}
			return true
		})
	case stack.OpFlush:
		write(d.start - d.begin) // wraps for begin > start, as sector_t does
	case stack.OpDiscard:
		write(d.start + b.Sector())
	default:
		d.eachPiece(b, func(s uint64) bool {
			write(d.start + s)
			return true
		})
	}
	d.mu.Unlock()
	if changed {
		d.report(extent.Set{}, cleared)
	}
	if failed != nil {
		return stack.Kill, failed
	}
	return stack.Remap, nil
}

// eachPiece calls f with the first sector (segment-relative) of each
// piece of b, the request cut at every block of the segment, until f
// returns false.
func (d *dust) eachPiece(b *stack.Bio, f func(sector uint64) bool) {
	blockBytes := uint64(stack.SectorSize) << d.shift
	end := b.Pos + b.Len
	for pos := b.Pos; ; {
		if !f(pos / stack.SectorSize) {
			return
		}
		pos = (pos/blockBytes + 1) * blockBytes
		if pos >= end {
			return
		}
	}
}
