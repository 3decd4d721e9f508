package nbdleaf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
)

// A daxstack server shows each device's bad ranges in the meta context
// daxstack:badblocks. A leaf whose connection selected it reads the whole
// export's ranges every Poll (at once when a connection comes up, then on
// a ticker) and makes them its poison list, reporting the differences to
// OnPoison: a bad range on the far machine becomes a bad range here, and
// the engine translates it up the stacks above.

// statusStep is the length one NBD_CMD_BLOCK_STATUS asks about.
const statusStep = 1 << 30

// poller polls the server's bad ranges until s ends.
func (l *Leaf) poller(s *session) {
	defer l.routines.Done()
	t := time.NewTicker(l.s.poll)
	defer t.Stop()
	for {
		if err := l.pollOnce(s.ctx); err != nil && s.ctx.Err() == nil {
			l.s.log.Debug("nbdleaf: polling bad ranges", "leaf", l.name, "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errRaced: the poison list changed by I/O while the poll ran; the next
// poll will see that change on the server too.
var errRaced = errors.New("the list changed during the poll")

// pollOnce reads the server's bad ranges and makes them the leaf's list.
func (l *Leaf) pollOnce(ctx context.Context) error {
	if l.lost.Load() {
		return nil
	}
	var cn *conn
	if p := l.live.Load(); p != nil {
		for _, c := range *p {
			if c.bad {
				cn = c
				break
			}
		}
	}
	if cn == nil {
		return nil
	}
	l.pmu.Lock()
	gen := l.pgen
	l.pmu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.s.ioTimeout)
	defer cancel()
	now, err := readBad(ctx, cn.c, min(cn.info.Size, l.bytes))
	if err != nil {
		return err
	}
	now = now.Clip(0, l.size)
	l.pmu.Lock()
	if l.pgen != gen {
		l.pmu.Unlock()
		return errRaced
	}
	old := l.poisonSet()
	l.storePoison(now)
	l.pmu.Unlock()
	l.report(now.Subtract(old), old.Subtract(now))
	return nil
}

// readBad reads the bad sectors of bytes [0, size) of an export.
func readBad(ctx context.Context, c *nbd.Client, size int64) (extent.Set, error) {
	m := int64(max(c.Info().BlockSizes.Minimum, 1))
	var all []extent.Extent
	for off := int64(0); off < size; {
		n := min(size-off, statusStep)
		if off+n < c.Info().Size {
			n = max(alignDown(n, m), m)
		} else {
			n = c.Info().Size - off
		}
		ext, err := c.BlockStatus(ctx, off, n, false)
		if err != nil {
			return extent.Set{}, err
		}
		bad, next, err := badSectors(ext[BadContext], off, off+n)
		if err != nil {
			return extent.Set{}, err
		}
		all = append(all, bad...)
		off = next
	}
	return extent.Of(all...), nil
}

// badSectors turns the extents a server sent for [lo, hi) of the bad
// context into the sectors they mark bad (a sector with one bad byte is
// bad) and says where the next request must start: the extents may cover
// less than asked. The extents must follow one another from lo, each not
// empty; a server that breaks that is refused, never trusted.
func badSectors(ext []nbd.Extent, lo, hi int64) ([]extent.Extent, int64, error) {
	var bad []extent.Extent
	pos := lo
	for _, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			return nil, 0, fmt.Errorf("%w: block status extent [%d, +%d) where %d was due", nbd.ErrProtocol, e.Offset, e.Length, pos)
		}
		end := hi
		if e.Length < hi-pos {
			end = pos + e.Length
		}
		if e.Flags&BadFlag != 0 {
			s := uint64(pos) / SectorSize
			bad = append(bad, extent.Extent{Start: s, Len: ceilSector(end) - s})
		}
		pos = end
		if pos == hi {
			break
		}
	}
	if pos <= lo {
		return nil, 0, fmt.Errorf("%w: block status answered nothing for [%d, %d)", nbd.ErrProtocol, lo, hi)
	}
	return bad, pos, nil
}
