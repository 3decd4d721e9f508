package nbdleaf

import (
	"github.com/daxstack/daxstack/extent"
)

// A request the server failed with NBD_EIO is not taken as proof that all
// of its range is bad: a server may fail a whole request for one bad
// sector (nbdkit's filters do), or fail once for a reason that passes.
// narrow sends the range again in halves, split at block boundaries, and
// halves of the halves that fail, down to blocks of one sector (or of
// the server's minimum block size, if larger). A block is bad when it
// failed with the requests around it and twice on its own: "the sectors
// that keep failing". Every other byte of the range is read (or written)
// by the pieces that succeed; a server's error offset or good prefix
// spares the bytes it vouched for.

// piece is a part of the range to send again; again marks a block that
// failed once on its own.
type piece struct {
	lo, hi int64
	again  bool
}

// narrow retries [off, off+len(p)), which failed with a media error after
// good bytes, and returns the bad sectors found, the number of bytes from
// off that are good before the first bad sector or the first other error,
// and that other error (a lost connection, say), which ends the search.
func (l *Leaf) narrow(o op, p []byte, off int64, fua bool, good int) (extent.Set, int, error) {
	g := l.granule()
	end := off + int64(len(p))
	start := max(off, alignDown(off+int64(good), g))
	prefix, frozen := start-off, false // bytes known good; frozen at the first bad block
	var bad []extent.Extent
	work := []piece{{lo: start, hi: end}}
	for len(work) > 0 {
		pc := work[len(work)-1]
		work = work[:len(work)-1]
		// Pieces come in order of offset: all before pc are done.
		n, err := l.move(o, p[pc.lo-off:pc.hi-off], pc.lo, fua)
		switch {
		case err == nil:
			if !frozen {
				prefix = pc.hi - off
			}
			continue
		case !isMedia(err):
			if !frozen {
				prefix = pc.lo - off + int64(n)
			}
			return extent.Of(bad...), int(prefix), err
		}
		block := alignDown(pc.lo, g)
		if pc.hi <= block+g {
			if !pc.again {
				work = append(work, piece{lo: pc.lo, hi: pc.hi, again: true})
				continue
			}
			s := extent.Extent{Start: uint64(block) / SectorSize}
			s.Len = min(uint64(block+g)/SectorSize, l.size) - s.Start
			bad = append(bad, s)
			frozen = true
			continue
		}
		lo := pc.lo
		if skip := alignDown(pc.lo+int64(n), g); n > 0 && skip > lo {
			if !frozen {
				prefix = skip - off
			}
			lo = skip
		}
		mid := alignDown(lo+(pc.hi-lo)/2, g)
		if mid <= lo {
			mid = alignDown(lo, g) + g
		}
		if mid >= pc.hi {
			work = append(work, piece{lo: lo, hi: pc.hi})
			continue
		}
		work = append(work, piece{lo: mid, hi: pc.hi}, piece{lo: lo, hi: mid})
	}
	return extent.Of(bad...), int(prefix), nil
}

// granule is the size of the blocks narrow goes down to: a sector, or the
// server's minimum block if larger.
func (l *Leaf) granule() int64 {
	g := int64(SectorSize)
	if p := l.live.Load(); p != nil && len(*p) > 0 {
		g = max(g, int64((*p)[0].info.BlockSizes.Minimum))
	}
	return g
}
