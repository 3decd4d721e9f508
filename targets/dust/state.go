package dust

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// The saved state, version 1:
//
//	byte     version (1)
//	byte     flags: bit 0 enabled, bit 1 quiet; the others 0
//	uvarint  number of listed blocks
//	then per block, in ascending order:
//	uvarint  the block, less the previous block (the first: itself)
//	byte     its write-fail count
//
// Restore refuses anything else: another version, unknown flags, blocks
// out of order or repeated, a block whose sectors pass extent.MaxSector,
// a short or overlong buffer.
const (
	stateV1    = 1
	flagEnable = 1 << 0
	flagQuiet  = 1 << 1
)

// State returns the list, the mode and the quiet flag.
func (d *dust) State() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	blocks := make([]uint64, 0, len(d.blocks))
	for b := range d.blocks {
		blocks = append(blocks, b)
	}
	slices.Sort(blocks)
	var flags byte
	if d.enabled {
		flags |= flagEnable
	}
	if d.quiet {
		flags |= flagQuiet
	}
	out := make([]byte, 0, 2+binary.MaxVarintLen64*(1+len(blocks)))
	out = append(out, stateV1, flags)
	out = binary.AppendUvarint(out, uint64(len(blocks)))
	prev := uint64(0)
	for _, b := range blocks {
		out = binary.AppendUvarint(out, b-prev)
		out = append(out, d.blocks[b])
		prev = b
	}
	return out
}

// Restore replaces the list, the mode and the quiet flag with a saved
// state. A state it cannot read changes nothing.
func (d *dust) Restore(state []byte) error {
	blocks, enabled, quiet, err := d.decode(state)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blocks, d.enabled, d.quiet = blocks, enabled, quiet
	return nil
}

func badState(format string, a ...any) error {
	return fmt.Errorf("dust: saved state: %s: %w", fmt.Sprintf(format, a...), stack.ErrInvalid)
}

func (d *dust) decode(state []byte) (map[uint64]uint8, bool, bool, error) {
	if len(state) < 3 {
		return nil, false, false, badState("%d bytes", len(state))
	}
	if state[0] != stateV1 {
		return nil, false, false, badState("version %d", state[0])
	}
	flags := state[1]
	if flags&^(flagEnable|flagQuiet) != 0 {
		return nil, false, false, badState("flags %#x", flags)
	}
	rest := state[2:]
	n, k := binary.Uvarint(rest)
	if k <= 0 {
		return nil, false, false, badState("block count unreadable")
	}
	rest = rest[k:]
	if n > uint64(len(rest))/2 { // each block takes at least two bytes
		return nil, false, false, badState("%d blocks in %d bytes", n, len(rest))
	}
	limit := (extent.MaxSector >> d.shift) - 1 // the last block whose sectors stay below MaxSector
	blocks := make(map[uint64]uint8, n)
	var prev uint64
	for i := uint64(0); i < n; i++ {
		delta, k := binary.Uvarint(rest)
		if k <= 0 || k >= len(rest) {
			return nil, false, false, badState("block %d unreadable", i)
		}
		if i > 0 && delta == 0 {
			return nil, false, false, badState("block %d repeated", prev)
		}
		b := prev + delta
		if b < prev || b > limit {
			return nil, false, false, badState("block %d out of range", i)
		}
		blocks[b] = rest[k]
		rest = rest[k+1:]
		prev = b
	}
	if len(rest) != 0 {
		return nil, false, false, badState("%d bytes after the list", len(rest))
	}
	return blocks, flags&flagEnable != 0, flags&flagQuiet != 0, nil
}
