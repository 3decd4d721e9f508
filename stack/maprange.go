package stack

import (
	"errors"
	"fmt"
)

// Piece is one contiguous part of a device range as it lands below: on a
// leaf, on a target without backing store (zero), or on a target that
// fails all I/O (error).
type Piece struct {
	Start  uint64 // first sector on the device that was mapped
	Len    uint64 // sectors
	Leaf   *Dev   // the leaf holding the piece; nil for zero and error
	Sector uint64 // first sector on Leaf
	Killed bool   // the piece lies in an error segment at some level
}

// MapRange maps sectors [start, start+count) of d down to the leaves,
// splitting wherever a segment, chunk or child boundary is crossed. Sectors
// past the end of d, or of a device below it, are refused.
func (p *Pool) MapRange(d *Device, start, count uint64) ([]Piece, error) {
	if count == 0 {
		return nil, nil
	}
	if start+count < start || start+count > d.Size() {
		return nil, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", ErrInvalid, start, count, d.Name(), d.Size())
	}
	var out []Piece
	for pos, end := start, start+count; pos < end; {
		pc, err := p.mapOne(d, pos)
		if err != nil {
			return nil, err
		}
		pc.Len = min(pc.Len, end-pos)
		pc.Start = pos
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Leaf == pc.Leaf && last.Killed == pc.Killed && (pc.Leaf == nil || last.Sector+last.Len == pc.Sector) {
				last.Len += pc.Len
				pos += pc.Len
				continue
			}
		}
		out = append(out, pc)
		pos += pc.Len
	}
	return out, nil
}

// mapOne maps one sector of d and returns the piece starting there, with
// Len set to the sectors that stay contiguous.
func (p *Pool) mapOne(d *Device, sector uint64) (Piece, error) {
	run := ^uint64(0)
	dev := &d.dev
	for dev.md != nil {
		t := dev.md.active.Load()
		i, ok := t.Find(sector)
		if !ok {
			return Piece{}, fmt.Errorf("%w: sector %d is past the end of %s (%d sectors)", ErrInvalid, sector, dev.md.Name(), t.Size())
		}
		seg := &t.segs[i]
		m, err := seg.Target.Map(sector - seg.Begin)
		run = min(run, m.Run)
		if errors.Is(err, ErrKill) {
			return Piece{Len: run, Killed: true}, nil
		} else if err != nil {
			return Piece{}, err
		}
		if m.Dev == nil {
			return Piece{Len: run}, nil
		}
		dev, sector = m.Dev, m.Sector
	}
	size := dev.leaf.Size()
	if sector >= size {
		return Piece{}, fmt.Errorf("%w: sector %d is past the end of %s (%d sectors)", ErrInvalid, sector, dev.Name(), size)
	}
	return Piece{Len: min(run, size-sector), Leaf: dev, Sector: sector}, nil
}
