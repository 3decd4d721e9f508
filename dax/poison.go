package dax

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"golang.org/x/sys/unix"
)

// poisonSource is where a leaf's poison list comes from.
type poisonSource struct {
	kind   int        // srcEmulated, srcPmem or srcDevdax
	file   string     // srcPmem: the disk's badblocks; srcDevdax: the region's
	ranges []daxRange // srcDevdax: where the device lies in its region
}

const (
	srcEmulated = iota
	srcPmem
	srcDevdax
)

// daxRange is a piece of a device-dax device in its nd region: Len
// sectors at region sector Region are device sectors from Dev.
type daxRange struct{ Region, Dev, Len uint64 }

// ParseBadblocks parses a badblocks list as the kernel's badblocks_show
// prints it: one "start count" line per range, in 512-byte sectors. Empty
// input, or a lone newline (a disk that keeps no list), is no bad blocks.
// Lines may come in any order and overlap. A line that is not two
// unsigned decimal numbers with a count of at least 1, or a range past
// extent.MaxSector, gives an error matching ErrBadblocks.
func ParseBadblocks(data []byte) (extent.Set, error) {
	var exts []extent.Extent
	for no := 1; len(data) > 0; no++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(why string) (extent.Set, error) {
			return extent.Set{}, fmt.Errorf("%w: line %d %q: %s", ErrBadblocks, no, line, why)
		}
		if len(f) != 2 {
			return bad("want \"start count\"")
		}
		start, err1 := parseDecimal(f[0])
		count, err2 := parseDecimal(f[1])
		switch {
		case err1 != nil || err2 != nil:
			return bad("not unsigned decimal numbers")
		case count == 0:
			return bad("zero count")
		case start >= extent.MaxSector || count > extent.MaxSector-start:
			return bad("range too large")
		}
		exts = append(exts, extent.Extent{Start: start, Len: count})
	}
	// Coalesce here: extent.Of unions overlapping extents one at a time.
	slices.SortFunc(exts, func(a, b extent.Extent) int { return cmp.Compare(a.Start, b.Start) })
	out := exts[:0]
	for _, e := range exts {
		if n := len(out); n > 0 && e.Start <= out[n-1].End() {
			out[n-1].Len = max(out[n-1].End(), e.End()) - out[n-1].Start
			continue
		}
		out = append(out, e)
	}
	return extent.Of(out...), nil
}

func parseDecimal(b []byte) (uint64, error) {
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// readSysfs reads the kernel's list for the leaf, in the leaf's sectors.
func (l *Leaf) readSysfs() (extent.Set, error) {
	b, err := os.ReadFile(l.src.file)
	if err != nil {
		return extent.Set{}, err
	}
	set, err := ParseBadblocks(b)
	if err != nil {
		return extent.Set{}, fmt.Errorf("%s: %w", l.src.file, err)
	}
	if l.src.kind == srcDevdax {
		var parts []extent.Run
		for _, r := range l.src.ranges {
			part := set.Clip(r.Region, r.Region+r.Len).Shift(int64(r.Dev) - int64(r.Region))
			parts = append(parts, part.Runs()...)
		}
		set = extent.FromRuns(parts...)
	}
	return set.Clip(0, l.size), nil
}

// storePoison replaces the list the I/O path sees. Callers hold pmu.
func (l *Leaf) storePoison(s extent.Set) {
	if s.Empty() {
		l.poison.Store(nil)
		return
	}
	l.poison.Store(&s)
}

func (l *Leaf) poisonSet() extent.Set {
	if p := l.poison.Load(); p != nil {
		return *p
	}
	return extent.Set{}
}

// report tells Opener.OnPoison about a change. Callers hold no lock.
func (l *Leaf) report(added, cleared extent.Set) {
	if l.onPoison != nil && (!added.Empty() || !cleared.Empty()) {
		l.onPoison(l, added, cleared)
	}
}

// PoisonSource returns SourceSysfs when the kernel keeps the leaf's list,
// SourceEmulated when the leaf does.
func (l *Leaf) PoisonSource() string {
	if l.src.kind == srcEmulated {
		return SourceEmulated
	}
	return SourceSysfs
}

// BadBlocks returns the leaf's bad sectors. A list the kernel keeps is
// read again (the kernel changes it on its own: a scrub, a machine check);
// such changes are not reported to OnPoison, which hears only of the
// changes the leaf makes. If the kernel's list cannot be read (the device
// went away), the last one read is returned.
func (l *Leaf) BadBlocks() extent.Set {
	if l.src.kind != srcEmulated && !l.closed.Load() {
		l.pmu.Lock()
		if now, err := l.readSysfs(); err == nil {
			l.storePoison(now)
		}
		l.pmu.Unlock()
	}
	return l.poisonSet()
}

// SetPoison replaces an emulated list, as when restoring a saved one. It
// does not call OnPoison. A list the kernel keeps is left alone.
func (l *Leaf) SetPoison(s extent.Set) {
	if l.src.kind != srcEmulated {
		return
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	l.storePoison(s.Clip(0, l.size))
}

func (l *Leaf) checkRange(s extent.Set) error {
	if b := s.Bounds(); b.End() > l.size {
		return leafError(l.name, fmt.Errorf("%w: %v is past the end (%d sectors)", ErrRange, b, l.size))
	}
	return nil
}

// Inject marks sectors bad, as a media error would, and reports the newly
// bad ones to OnPoison. On a pmem device whose kernel keeps the list, each
// extent is written to its sysfs badblocks file ("start count", which the
// kernel's badblocks_store adds) and the list is read back. Device-dax
// lists belong to the nd region and cannot be written (ErrKernelList).
func (l *Leaf) Inject(s extent.Set) error {
	if s.Empty() {
		return nil
	}
	if err := l.checkRange(s); err != nil {
		return err
	}
	if l.closed.Load() {
		return leafError(l.name, ErrClosed)
	}
	var added, cleared extent.Set
	var err error
	l.pmu.Lock()
	old := l.poisonSet()
	switch l.src.kind {
	case srcEmulated:
		now := old.Union(s)
		l.storePoison(now)
		added = now.Subtract(old)
	case srcDevdax:
		err = leafError(l.name, fmt.Errorf("inject into %s: %w", l.src.file, ErrKernelList))
	case srcPmem:
		if l.lost.Load() {
			err = leafError(l.name, ErrLost)
			break
		}
		err = l.writeBadblocks(s)
		now, rerr := l.readSysfs()
		if rerr == nil {
			l.storePoison(now)
			added, cleared = now.Subtract(old), old.Subtract(now)
		} else if err == nil {
			err = leafError(l.name, rerr)
		}
	}
	l.pmu.Unlock()
	l.report(added, cleared)
	return err
}

// writeBadblocks writes one "start count" line per extent of s to the
// sysfs file (appending, which sysfs ignores and a fake tree needs).
func (l *Leaf) writeBadblocks(s extent.Set) error {
	f, err := os.OpenFile(l.src.file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return leafError(l.name, err)
	}
	defer f.Close()
	const maxCount = 1 << 30 // the kernel reads the count as an int
	for e := range s.Extents() {
		for e.Len > 0 {
			n := min(e.Len, maxCount)
			if _, err := fmt.Fprintf(f, "%d %d\n", e.Start, n); err != nil {
				return leafError(l.name, err)
			}
			e.Start, e.Len = e.Start+n, e.Len-n
		}
	}
	return nil
}

// Clear makes bad sectors of s good again and reports those it cleared to
// OnPoison; sectors of s that are not bad are left alone. An emulated list
// just forgets them (the data under them is kept). On a pmem device whose
// kernel keeps the list, the bad sectors are overwritten with zeros with
// O_DIRECT (the pmem driver clears poison on write, as ndctl clear-errors
// has it do) and the list is read back; sectors still bad give an error
// matching syscall.EIO. Device-dax poison cannot be cleared from here
// (ErrKernelList).
func (l *Leaf) Clear(s extent.Set) error {
	if s.Empty() {
		return nil
	}
	if err := l.checkRange(s); err != nil {
		return err
	}
	_, sh, err := l.enterNoMap()
	defer l.exit(sh)
	if errors.Is(err, ErrClosed) || (err != nil && l.src.kind != srcEmulated) {
		return err
	}
	err = nil // an emulated list can be cleared while the device is lost
	var added, cleared extent.Set
	l.pmu.Lock()
	old := l.poisonSet()
	hit := s.Intersect(old)
	switch {
	case hit.Empty():
	case l.src.kind == srcEmulated:
		l.storePoison(old.Subtract(hit))
		cleared = hit
	case l.src.kind == srcDevdax:
		err = leafError(l.name, fmt.Errorf("clear %v: %w", hit, ErrKernelList))
	case l.src.kind == srcPmem:
		err = l.zeroSectors(hit)
		now, rerr := l.readSysfs()
		if rerr == nil {
			l.storePoison(now)
			added, cleared = now.Subtract(old), old.Subtract(now)
			if still := now.Intersect(hit); !still.Empty() && err == nil {
				err = leafError(l.name, fmt.Errorf("sectors %v still bad after clearing writes: %w", still, syscall.EIO))
			}
		} else if err == nil {
			err = leafError(l.name, rerr)
		}
	}
	l.pmu.Unlock()
	l.report(added, cleared)
	return err
}

// zeroSectors overwrites sectors with zeros through O_DIRECT.
func (l *Leaf) zeroSectors(s extent.Set) error {
	fd, lbs, err := l.direct()
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	zeros := alignedBuf(chunk)
	for e := range s.Extents() {
		lo, hi := int64(e.Start)*SectorSize, int64(e.End())*SectorSize
		if lo%int64(lbs) != 0 || hi%int64(lbs) != 0 {
			return leafError(l.name, fmt.Errorf("clear %v: %w: the device's logical block is %d bytes", e, ErrRange, lbs))
		}
		for at := lo; at < hi; at += chunk {
			if _, err := pwriteFull(fd, zeros[:min(chunk, hi-at)], at); err != nil {
				return leafError(l.name, pathErr("write", l.path, err))
			}
		}
	}
	if err := unix.Fsync(fd); err != nil {
		return leafError(l.name, pathErr("fsync", l.path, err))
	}
	return nil
}
