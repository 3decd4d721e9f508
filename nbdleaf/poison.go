package nbdleaf

import (
	"fmt"

	"github.com/daxstack/daxstack/extent"
)

// BadContext is the meta context in which a daxstack server shows a
// device's bad ranges (flag BadFlag on a bad range).
const BadContext = "daxstack:badblocks"

// BadFlag marks a bad range in BadContext.
const BadFlag = 1

// Poison sources, as PoisonSource reports them.
const (
	// SourceEmulated: the leaf keeps its list: sectors the server kept
	// failing, until a write clears them. The engine saves it and gives
	// it back with SetPoison.
	SourceEmulated = "emulated"
	// SourceRemote: the server keeps the list (daxstack:badblocks); the
	// leaf polls it, and its I/O's findings last until the next poll.
	SourceRemote = "remote"
)

// PoisonSource returns SourceRemote when the server the leaf is (or was
// last) connected to offers daxstack:badblocks, SourceEmulated otherwise
// (and before the first connection).
func (l *Leaf) PoisonSource() string {
	if l.remote.Load() {
		return SourceRemote
	}
	return SourceEmulated
}

// BadBlocks returns the leaf's bad sectors: those the server kept failing
// and, from a daxstack server, those its last poll found. A lost leaf
// returns its last list.
func (l *Leaf) BadBlocks() extent.Set { return l.poisonSet() }

// SetPoison replaces the list, as when restoring a saved one; it does not
// call OnPoison. For a leaf whose server keeps the list the next poll
// corrects it, reporting the differences.
func (l *Leaf) SetPoison(s extent.Set) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	l.pgen++
	l.storePoison(s.Clip(0, l.size))
}

// Inject marks sectors bad, as a media error would, and reports the newly
// bad ones to OnPoison. A list the server keeps cannot be changed from
// here (ErrRemoteList): inject on the far daxstack instead.
func (l *Leaf) Inject(s extent.Set) error {
	if err := l.checkSet(s); err != nil || s.Empty() {
		return err
	}
	if l.remote.Load() {
		return leafError(l.name, fmt.Errorf("inject: %w", ErrRemoteList))
	}
	l.addBad(s)
	return nil
}

// Clear makes bad sectors of s good again and reports those it cleared.
// An emulated list just forgets them (the data under them is kept); on a
// leaf whose server keeps the list, the bad sectors are overwritten with
// zeroes, which clears them on a daxstack server as on pmem.
func (l *Leaf) Clear(s extent.Set) error {
	if err := l.checkSet(s); err != nil || s.Empty() {
		return err
	}
	hit := s.Intersect(l.poisonSet())
	if hit.Empty() {
		return nil
	}
	if !l.remote.Load() {
		l.clearBad(hit)
		return nil
	}
	zero := make([]byte, 64<<10)
	for e := range hit.Extents() {
		for at, end := int64(e.Start)*SectorSize, int64(e.End())*SectorSize; at < end; at += int64(len(zero)) {
			if _, err := l.WriteAt(zero[:min(int64(len(zero)), end-at)], at); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Leaf) checkSet(s extent.Set) error {
	if b := s.Bounds(); !s.Empty() && b.End() > l.size {
		return leafError(l.name, fmt.Errorf("%w: %v is past the end (%d sectors)", ErrRange, b, l.size))
	}
	if l.closed.Load() {
		return leafError(l.name, ErrClosed)
	}
	return nil
}

func (l *Leaf) poisonSet() extent.Set {
	if p := l.poison.Load(); p != nil {
		return *p
	}
	return extent.Set{}
}

// storePoison replaces the list the I/O path sees. Callers hold pmu.
func (l *Leaf) storePoison(s extent.Set) {
	if s.Empty() {
		l.poison.Store(nil)
		return
	}
	l.poison.Store(&s)
}

// addBad adds sectors to the list and reports the new ones.
func (l *Leaf) addBad(s extent.Set) {
	if s.Empty() {
		return
	}
	l.pmu.Lock()
	old := l.poisonSet()
	now := old.Union(s.Clip(0, l.size))
	l.storePoison(now)
	l.pgen++
	l.pmu.Unlock()
	l.report(now.Subtract(old), extent.Set{})
}

// clearBad takes sectors off the list and reports those that were on it.
func (l *Leaf) clearBad(s extent.Set) {
	if s.Empty() {
		return
	}
	l.pmu.Lock()
	old := l.poisonSet()
	hit := old.Intersect(s)
	if !hit.Empty() {
		l.storePoison(old.Subtract(hit))
		l.pgen++
	}
	l.pmu.Unlock()
	l.report(extent.Set{}, hit)
}

// report tells OnPoison about a change. Callers hold no lock.
func (l *Leaf) report(added, cleared extent.Set) {
	if l.s.onPoison != nil && (!added.Empty() || !cleared.Empty()) {
		l.s.onPoison(l, added, cleared)
	}
}

// touches reports whether I/O of bytes [lo, hi) touches a sector of s.
func touches(s *extent.Set, lo, hi int64) bool {
	if s == nil || s.Empty() || lo >= hi {
		return false
	}
	first := uint64(lo) / SectorSize
	return s.Overlaps(extent.Extent{Start: first, Len: ceilSector(hi) - first})
}

// firstExtent returns the first extent of a set that is not empty.
func firstExtent(s extent.Set) extent.Extent {
	for e := range s.Extents() {
		return e
	}
	return extent.Extent{}
}
