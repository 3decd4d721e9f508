package dax

// A leaf whose device or file got smaller under it (truncate -s 1M x.img,
// losetup -c after the backing file shrank): the sectors past its new end
// are bad sectors of the leaf, as a lost leaf's are all of them. The leaf
// keeps the size it was opened (or recorded) with, Size, which is what
// tables were checked against; its current size is looked at again by
// Recheck and whenever I/O reaches past it or faults, and I/O past it
// fails with a *TruncatedError instead of a SIGBUS. The mapping always
// covers Size, so when the file or device grows back the same mapping
// works again (the sectors that came back read as whatever the file or
// device now holds there: zeros after truncate -s).

import (
	"fmt"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// TruncatedError is I/O that reached sectors past the leaf's current end.
// It matches syscall.EIO.
type TruncatedError struct {
	Leaf string        // the leaf's Name
	Bad  extent.Extent // the sectors past the end that the I/O met
	Size uint64        // sectors the leaf was opened (or recorded) with
	Now  uint64        // sectors it has now
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("dax: %s: sectors %v are past the end: it has %d sectors now, it had %d: %v", e.Leaf, e.Bad, e.Now, e.Size, syscall.EIO)
}

// Unwrap returns syscall.EIO.
func (e *TruncatedError) Unwrap() error { return syscall.EIO }

// Known is what a caller recorded about a leaf, for OpenKnown to check
// the device or file found against.
type Known struct {
	// Identity must be the same (Identity.Same) as the one found; the
	// zero Identity checks nothing.
	Identity Identity
	// Size is the size in sectors the leaf had when it was recorded, the
	// one its tables were checked against; 0 takes the size found.
	Size uint64
	// ID, when set, is the ID the leaf keeps: a device found at another
	// number (Find: a loop device re-attached) is still the leaf that was
	// recorded under ID, and its records need no re-keying.
	ID string
}

// OpenKnown is Open for a leaf recorded earlier: it refuses a device or
// file whose identity is not the recorded one (a file replaced at the
// same path, another medium in the same loop device: an error matching
// ErrChanged, to be treated as lost, never used), and keeps the recorded
// size as the leaf's Size even when the device or file is smaller now:
// the sectors past its current end are then Truncated, and fail I/O.
func (o *Opener) OpenKnown(ref string, k Known) (*Leaf, error) {
	l, err := o.Open(ref)
	if err != nil {
		return nil, err
	}
	if k.Identity.Kind != "" && !k.Identity.Same(l.ident) {
		l.Close()
		return nil, leafError(l.name, fmt.Errorf("%s is not the recorded leaf (%s now, %s recorded): %w", ref, l.ident, k.Identity, ErrChanged))
	}
	if k.ID != "" {
		l.id = k.ID
	}
	if k.Size > 0 && k.Size != l.size {
		found := l.size
		l.size = k.Size
		l.cur.Store(min(found, k.Size))
		if l.src.kind != srcEmulated {
			l.storePoison(l.poisonSet().Clip(0, l.size))
		}
	}
	return l, nil
}

// CurrentSize returns the leaf's size in sectors as last seen (by Open,
// Recheck, or I/O that reached past it), never more than Size.
func (l *Leaf) CurrentSize() uint64 { return l.cur.Load() }

// Truncated returns the sectors of the leaf past its current end:
// [CurrentSize, Size), empty when the leaf has all of its sectors. They
// are bad sectors of the leaf (reads and writes of them fail), to be
// translated up like poison, but they are not in BadBlocks: they are not
// poison to be saved, and they stop being bad when the leaf grows back.
func (l *Leaf) Truncated() extent.Set {
	c := l.cur.Load()
	if c >= l.size {
		return extent.Set{}
	}
	return extent.Of(extent.Extent{Start: c, Len: l.size - c})
}

// Recheck looks at the leaf's device or file again, as a rescan should:
// that its path still names the object the leaf was opened on (and, for a
// block device, the same medium: diskseq, a loop device's backing file),
// and its size now. It returns the sectors past the leaf's end before and
// after (see Truncated): what became bad is now.Subtract(was), what came
// back is was.Subtract(now). The error, with was == now, matches
// ErrChanged when the path names something else now (a file replaced at
// the same path: the leaf must be treated as lost; its descriptor still
// reaches the old object, whose data nobody else will ever see), or
// fs.ErrNotExist when it is gone, or ErrLost for a leaf made by Missing.
// Recheck does not mark the leaf lost: that is the caller's decision
// (SetLost).
func (l *Leaf) Recheck() (was, now extent.Set, err error) {
	was = l.Truncated()
	if l.missing {
		return was, was, leafError(l.name, ErrLost)
	}
	if l.closed.Load() {
		return was, was, leafError(l.name, ErrClosed)
	}
	if err := l.samePath(); err != nil {
		return was, was, err
	}
	l.refreshSize(l.m.Load())
	return was, l.Truncated(), nil
}

// samePath checks that the leaf's path still names its object.
func (l *Leaf) samePath() error {
	var st unix.Stat_t
	if err := unix.Stat(l.path, &st); err != nil {
		return leafError(l.name, pathErr("stat", l.path, err))
	}
	switch l.kind {
	case KindFile:
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Dev != l.stDev || st.Ino != l.stIno {
			return leafError(l.name, fmt.Errorf("%s is another file now: %w", l.path, ErrChanged))
		}
		return nil
	case KindDevdax:
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != l.rdev {
			return leafError(l.name, fmt.Errorf("%s is another device now: %w", l.path, ErrChanged))
		}
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != l.rdev {
		return leafError(l.name, fmt.Errorf("%s is another device now: %w", l.path, ErrChanged))
	}
	if l.seqFile != "" && l.ident.DiskSeq != 0 {
		if seq, err := readUint(l.seqFile); err == nil && seq != l.ident.DiskSeq {
			return leafError(l.name, fmt.Errorf("%s has another medium now (diskseq %d, was %d): %w", l.path, seq, l.ident.DiskSeq, ErrChanged))
		}
	}
	if l.ident.Loop {
		id := Identity{Kind: l.ident.Kind, Major: l.ident.Major, Minor: l.ident.Minor}
		loopIdentity(&id, l.diskDir, l.path)
		if !l.ident.Same(id) {
			return leafError(l.name, fmt.Errorf("%s has another backing file now: %w", l.path, ErrChanged))
		}
	}
	return nil
}

// refreshSize looks at the leaf's size now, through the mapping's
// descriptor when it is open, and records it (never more than Size); it
// returns the current size, the old one if it cannot be found.
func (l *Leaf) refreshSize(m *mapping) uint64 {
	now, err := l.sizeNow(m)
	if err != nil {
		return l.cur.Load()
	}
	c := min(now, l.size)
	l.cur.Store(c)
	return c
}

// sizeNow finds the size of the leaf's object in sectors.
func (l *Leaf) sizeNow(m *mapping) (uint64, error) {
	if l.missing {
		return 0, ErrLost
	}
	switch l.kind {
	case KindFile:
		var st unix.Stat_t
		if m != nil {
			if err := unix.Fstat(m.fd, &st); err != nil {
				return 0, err
			}
		} else if err := unix.Stat(l.path, &st); err != nil {
			return 0, err
		} else if st.Dev != l.stDev || st.Ino != l.stIno {
			return 0, fs.ErrNotExist
		}
		return uint64(st.Size) / SectorSize, nil
	case KindDevdax:
		b, err := readUint(l.sizeFile)
		return b / SectorSize, err
	}
	if m != nil {
		var size uint64
		if err := ioctlSize(m.fd, &size); err == nil {
			return size / SectorSize, nil
		}
	}
	return readUint(l.sizeFile)
}
