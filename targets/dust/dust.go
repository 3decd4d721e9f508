// Package dust is the dust target: a linear mapping that fails reads of
// chosen blocks, emulating a disk's latent bad sectors, as the kernel's
// dm-dust.
//
//	<start> <length> dust <device> <offset> <blksz>
//
// Sector s of the segment is sector offset+s of the device, as with
// linear. The target keeps a list of bad blocks, numbered in units of
// blksz bytes from the start of the underlying device (the offset
// included), each with a write-fail count; `dmsetup message` edits it
// (addbadblock, removebadblock, queryblock, countbadblocks,
// clearbadblocks, listbadblocks) and switches the mode: a new target is
// in bypass, where nothing fails; after `enable` a read whose block is
// listed fails, and a write to a listed block fails while its write-fail
// count lasts (using one up) and then removes the block from the list.
//
// Requests are split at every blksz of the segment (the kernel's
// dm_set_target_max_io_len), and each piece is judged by the block of its
// first sector, as the kernel does. While enabled, the listed blocks'
// sectors are the target's failing sectors (stack.Failer): bad ranges of
// the dust device, carried up like poison. The list, the mode and the
// quiet flag are the target's saved state (stack.Stateful), so every
// process sees the same list. Importing the package registers the target
// with stack.
package dust

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"sync"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/targets/internal/kscan"
)

func init() {
	stack.Register(stack.TargetType{Name: "dust", Version: [3]uint32{1, 0, 0}, New: New})
}

// maxBlockSectors is DUST_MAX_BLKSZ_SECTORS: a block is at most 1 GiB.
const maxBlockSectors = 2097152

type dust struct {
	report func(added, cleared extent.Set) // TargetInfo.StateChanged (tests replace it)
	dev    *stack.Dev
	start  uint64 // first sector on dev
	len    uint64 // segment length
	begin  uint64 // segment start in its table (an empty flush's sector is relative to it)
	blksz  uint32 // bytes
	shift  uint   // log2 of sectors per block

	mu      sync.Mutex
	blocks  map[uint64]uint8 // listed block -> write-fail count
	enabled bool             // fail_read_on_bad_block (false: bypass)
	quiet   bool
}

// New is the constructor, with the kernel's checks in its order: the
// argument count, the block size (a 32-bit decimal, not 0, at least 512,
// a power of two, at most min(length, 2097152) sectors), the offset, the
// device. A failed device lookup is EINVAL, as dm-dust reports it whatever
// dm_get_device said.
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) != 3 {
		return nil, stack.Errorf("Invalid argument count", nil)
	}
	blksz, ok := stack.ParseUint32(args[2])
	if !ok || blksz == 0 {
		return nil, stack.Errorf("Invalid block size parameter", nil)
	}
	if blksz < stack.SectorSize {
		return nil, stack.Errorf("Block size must be at least 512", nil)
	}
	if blksz&(blksz-1) != 0 {
		return nil, stack.Errorf("Block size must be a power of 2", nil)
	}
	if uint64(blksz/stack.SectorSize) > min(ti.Len, maxBlockSectors) {
		return nil, stack.Errorf("Block size is too large", nil)
	}
	start, ok := stack.ParseSector(args[1])
	if !ok {
		return nil, stack.Errorf("Invalid device offset sector", nil)
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return nil, stack.Errorf("Device lookup failed", fmt.Errorf("%w: %w", stack.ErrInvalid, err))
	}
	spb := uint64(blksz / stack.SectorSize)
	ti.SetMaxIOLen(spb)
	return &dust{
		report: ti.StateChanged,
		dev:    dev,
		start:  start,
		len:    ti.Len,
		begin:  ti.Begin,
		blksz:  blksz,
		shift:  uint(bits.TrailingZeros64(spb)),
		blocks: map[uint64]uint8{},
	}, nil
}

// Map is linear: the list changes what I/O does, not where it goes.
func (d *dust) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Dev: d.dev, Sector: d.start + off, Run: d.len - off}, nil
}

// Rmap is linear's: the given sectors inside [start, start+len), moved
// back by start.
func (d *dust) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != d.dev {
		return extent.Set{}
	}
	return s.Clip(d.start, d.start+d.len).Shift(-int64(d.start))
}

func (d *dust) Areas() []stack.Area {
	return []stack.Area{{Dev: d.dev, Start: d.start, Len: d.len}}
}

// Table prints "<dev> <offset> <blksz>".
func (d *dust) Table() string {
	return d.dev.Ref() + " " + strconv.FormatUint(d.start, 10) + " " + strconv.FormatUint(uint64(d.blksz), 10)
}

// Status prints "<dev> bypass|fail_read_on_bad_block verbose|quiet".
func (d *dust) Status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	mode, talk := "bypass", "verbose"
	if d.enabled {
		mode = "fail_read_on_bad_block"
	}
	if d.quiet {
		talk = "quiet"
	}
	return d.dev.Ref() + " " + mode + " " + talk
}

// Split refuses every cut but the whole segment. The pieces of a dust
// segment would each hold a copy of the list and the mode, while the
// kernel's target holds one: a message reaches only the piece at the
// sector it names, and a write clears a block only from the piece it
// went through, so the pieces' lists, counts and modes would drift apart
// from what the one target would show. Keeping them together would need
// one state shared by several segments, which the contract does not have.
func (d *dust) Split(off, n uint64) (string, error) {
	if off != 0 || n != d.len {
		return "", errors.New("a dust segment keeps one list of bad blocks and one mode, which pieces of it would each hold a copy of, drifting apart (a message reaches one piece, a clearing write one piece); it is cut only whole")
	}
	return d.Table(), nil
}

// Failing returns, while enabled, the sectors of the segment that lie in
// listed blocks; nothing in bypass.
func (d *dust) Failing() extent.Set {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.enabled || len(d.blocks) == 0 {
		return extent.Set{}
	}
	exts := make([]extent.Extent, 0, len(d.blocks))
	for b := range d.blocks {
		if e := d.blockExtent(b); !e.Empty() {
			exts = append(exts, e)
		}
	}
	return extent.Of(exts...)
}

// blockExtent returns the sectors of block b that lie in the segment,
// relative to the segment.
func (d *dust) blockExtent(b uint64) extent.Extent {
	lo, hi := max(b<<d.shift, d.start), min((b+1)<<d.shift, d.start+d.len)
	if lo >= hi {
		return extent.Extent{}
	}
	return extent.Extent{Start: lo - d.start, Len: hi - lo}
}

// blockSet is blockExtent as a set.
func (d *dust) blockSet(b uint64) extent.Set { return extent.Of(d.blockExtent(b)) }

// matches is kscan.EqualFold, the kernel's strcasecmp of a message word.
func matches(word, keyword string) bool { return kscan.EqualFold(word, keyword) }
