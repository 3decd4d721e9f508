package fsfiles

import (
	"context"
	"fmt"
	"path"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// Lookup says what the device's sectors hold: the files and byte ranges,
// the metadata and the free space they hit. sectors are 512-byte sectors
// of the device, in any number of runs (a lost leaf is a few strided
// runs, never enumerated); those past the device's end are ignored. At
// most limit entries are returned (0: no limit): those met first, in the
// device's order, files before metadata before free space, each file's
// ranges complete; Truncated says when more were hit. Only the entries
// kept are named, so a lookup of a whole device costs the search of the
// index (or GETFSMAP over it), not the paths of every file.
//
// Where GETFSMAP names owners (XFS with rmapbt) it says everything and the
// walk only keeps names. Elsewhere the walk's index of extents places the
// files and directories, and GETFSMAP (if the filesystem has it) sorts the
// rest into free space and the metadata it knows; the index is built by
// the first Lookup (or Prepare) and kept current by the watch, so a warm
// Lookup costs the changes since the last one, a search, and a GETFSMAP
// query only for what no file holds.
func (fs *FS) Lookup(ctx context.Context, sectors extent.Set, limit int) (Result, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return Result{}, ErrClosed
	}
	if err := fs.checkMount(); err != nil {
		return Result{}, err
	}
	res := Result{Mount: fs.mount.Point, FSType: fs.mount.FSType, Method: "fiemap"}
	if !fs.wantExtents() {
		res.Method = "getfsmap"
	}
	if sectors.Bounds().End() > fs.sectors {
		// Past the device's end as last seen: it may have grown.
		if n, err := readSectors(fs.opts.Sys, fs.major, fs.minor); err == nil {
			fs.sectors = n
		}
	}
	set := sectors.Clip(0, fs.sectors)
	if set.Empty() {
		return res, nil
	}
	root, err := fs.openRoot()
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(root)
	var beyond extent.Set
	if end := fs.caps.fsSectors(); end > 0 && end < set.Bounds().End() {
		// Past the filesystem's end as last seen: it may have grown.
		fs.refreshCaps(root)
		if end = fs.caps.fsSectors(); end > 0 && end < fs.sectors {
			beyond, set = set.Clip(end, fs.sectors), set.Clip(0, end)
		}
	}
	lk := &lookup{fs: fs, ctx: ctx, root: root, c: newCollector(fs.opts.MaxPieces, limit)}
	if !beyond.Empty() {
		lk.c.metadata(metaKey{kind: KindBeyond}, beyond.Runs())
	}
	unknown := set
	if fs.wantExtents() {
		// The index is current (the watch saw every change since the
		// walk): what it places is placed, and GETFSMAP, which costs
		// more, is asked only about the rest.
		if err := lk.state(); err != nil {
			return Result{}, err
		}
		unknown = lk.byIndex(unknown)
	}
	if !unknown.Empty() && fs.caps.fsmap {
		if unknown, err = lk.byFsmap(unknown); err != nil {
			return Result{}, err
		}
	}
	if !unknown.Empty() {
		if unknown, err = lk.byRegions(unknown); err != nil {
			return Result{}, err
		}
	}
	if !unknown.Empty() && fs.wantExtents() && fs.watch != nil {
		// Data written through a shared mapping raises no event until the
		// file's last reference goes: map again what is open for writing
		// now.
		if lk.remapWritable() {
			unknown = lk.byIndex(unknown)
		}
	}
	if !unknown.Empty() {
		lk.c.metadata(metaKey{kind: KindMetadata, detail: fs.unattributed()}, unknown.Runs())
	}
	r := lk.c.result(limit, lk.paths, lk.openBy)
	r.Mount, r.FSType, r.Method = res.Mount, res.FSType, res.Method
	return r, nil
}

// unattributed says what is known of in-use sectors nothing else named.
func (fs *FS) unattributed() string {
	switch {
	case !fs.caps.fsmap:
		return "no file's data: free space or metadata (the filesystem has no GETFSMAP to tell which)"
	case fs.caps.owners:
		return "in use; GETFSMAP names no owner"
	case fs.caps.xfs != nil:
		return "in use, not a file's data: free-space or inode btree blocks, or other metadata (no reverse mapping to name it)"
	case fs.caps.ext4 != nil:
		return "in use or reserved, not a file's data: an extended attribute or symlink block, blocks the allocator holds for a file (preallocation), or other metadata"
	}
	return "in use, not a file's data"
}

// lookup is the work of one Lookup.
type lookup struct {
	fs       *FS
	ctx      context.Context
	root     int
	c        *collector
	st       *state
	pieces   []extent.Run // scratch
	dirCache map[uint64]string
	open     map[uint64]openRef
	pidsOf   map[uint64][]int
}

func (lk *lookup) state() error {
	if lk.st != nil {
		return nil
	}
	st, err := lk.fs.current(lk.ctx)
	if err != nil {
		return err
	}
	lk.st = st
	return nil
}

// fsmapRun is an inode's record met by the bad sectors.
type fsmapHit struct {
	rec    fsmapRecord
	start  uint64 // device sector of the record's first byte
	pieces []extent.Run
}

// byFsmap classifies the set with GETFSMAP and returns the sectors it
// leaves unknown (not reported, or reported with an unknown owner).
func (lk *lookup) byFsmap(set extent.Set) (extent.Set, error) {
	fs := lk.fs
	si := newSetIndex(set)
	var known []interval
	var owned []fsmapHit
	// The inodes met, counted against the collector's entries: a lookup
	// that hits every file stops once it has as many as it keeps, and
	// says it was truncated, rather than read every record of the device.
	owners := map[uint64]bool{}
	stopAt, stopped := uint64(0), false
	dev := encodeDev(fs.major, fs.minor)
	for _, sp := range spans(set) {
		err := getfsmap(lk.root, dev, sp.lo*512, sp.hi*512-1, func(r fsmapRecord) bool {
			lo := max(r.Physical/512, sp.lo)
			hi := min((r.Physical+r.Length+511)/512, sp.hi)
			if hi <= lo {
				return true
			}
			if r.special() && r.Owner == ownUnknown || !r.special() && fs.wantExtents() {
				// Unknown owner; or an owner, but the walk's index is to
				// place files (a comparison run): left to the index.
				return true
			}
			p := si.clip(lo, hi, nil)
			if len(p) == 0 {
				known = append(known, interval{lo, hi})
				return true
			}
			if !r.special() && !owners[r.Owner] {
				if lk.c.keys > 0 && len(lk.c.files)+len(lk.c.meta)+len(lk.c.free)+len(owners) >= lk.c.keys {
					lk.c.full = true
				} else {
					owners[r.Owner] = true
				}
			}
			if lk.c.full {
				stopAt, stopped = lo, true
				return false
			}
			known = append(known, interval{lo, hi})
			switch {
			case !r.special() && r.Physical%512 != 0:
				// Not on whole sectors: no block-based filesystem reports
				// that; leave it unknown.
				known = known[:len(known)-1]
			case !r.special():
				owned = append(owned, fsmapHit{rec: r, start: r.Physical / 512, pieces: p})
			case r.Owner == ownFree:
				lk.c.freeSpace(p)
			default:
				kind, ok := specialKinds[r.Owner]
				detail := ""
				if !ok {
					kind, detail = KindMetadata, fmt.Sprintf("GETFSMAP owner %#x", r.Owner)
				}
				lk.c.metadata(metaKey{kind: kind, detail: detail}, p)
			}
			if lk.c.full && !stopped {
				stopAt, stopped = hi, true
			}
			return !lk.c.full && lk.ctx.Err() == nil
		})
		if err != nil {
			return extent.Set{}, fs.errorf("getfsmap", err)
		}
		if err := lk.ctx.Err(); err != nil {
			return extent.Set{}, err
		}
		if stopped {
			break
		}
	}
	if stopped {
		// What lies past the stop was not looked at: it is left out
		// (the result says truncated), not called unknown.
		set = set.Clip(0, stopAt)
	}
	if len(owned) > 0 {
		if err := lk.state(); err != nil {
			return extent.Set{}, err
		}
		for _, h := range owned {
			lk.owner(h)
		}
	}
	return set.Subtract(unionSet(known)), nil
}

// owner records the pieces of an inode's GETFSMAP record.
func (lk *lookup) owner(h fsmapHit) {
	r := h.rec
	ino := r.Owner
	switch {
	case r.Flags&fmrOfExtentMap != 0:
		lk.c.metadata(metaKey{kind: KindExtentMap, ino: ino}, h.pieces)
	case r.Flags&fmrOfAttrFork != 0:
		lk.c.metadata(metaKey{kind: KindXattr, ino: ino}, h.pieces)
	default:
		switch typ, _ := lk.st.names.typeOf(ino); typ {
		case dtDir:
			lk.c.metadata(metaKey{kind: KindDirectory, ino: ino}, h.pieces)
			return
		case dtLnk:
			lk.c.metadata(metaKey{kind: KindMetadata, ino: ino, detail: "symlink target"}, h.pieces)
			return
		}
		lk.c.file(fileKey{ino: ino, unwritten: r.Flags&fmrOfPrealloc != 0}, h.start, r.Offset, h.pieces)
	}
}

// byIndex places the unknown sectors with the walk's extents and returns
// what is still unknown.
func (lk *lookup) byIndex(unknown extent.Set) extent.Set {
	st := lk.st
	var cover []interval
	for _, run := range unknown.Runs() {
		sp := run.Span()
		st.ext.each(sp.Start, sp.End(), func(m mapped) {
			if !lk.placed(m.Ino) {
				return
			}
			lk.pieces = clipRun(run, m.Start, m.end(), lk.pieces[:0])
			if len(lk.pieces) == 0 {
				return
			}
			cover = append(cover, interval{max(m.Start, sp.Start), min(m.end(), sp.End())})
			p := append([]extent.Run(nil), lk.pieces...)
			switch {
			case m.Flags&xDir != 0:
				lk.c.metadata(metaKey{kind: KindDirectory, ino: m.Ino}, p)
			default:
				lk.c.file(fileKey{ino: m.Ino, unwritten: m.Flags&xUnwritten != 0}, m.Start, m.Logical, p)
			}
		})
	}
	if len(cover) == 0 {
		return unknown
	}
	return unknown.Subtract(unionSet(cover))
}

// placed reports whether the index's extents of ino can be believed: it
// has a name, or it is an unlinked file still open.
func (lk *lookup) placed(ino uint64) bool {
	if ino == lk.st.rootIno {
		return true
	}
	if nd := lk.st.names.nodes[ino]; nd != nil && len(nd.links) > 0 {
		return true
	}
	_, ok := lk.st.orphans[ino]
	return ok
}

// remapWritable maps again every file of the filesystem that a process
// holds open for writing or mapped shared and writable.
func (lk *lookup) remapWritable() bool {
	m := &mapper{}
	seen := map[uint64]bool{}
	_ = scanOpen(lk.fs.opts.Proc, lk.fs.dev, func(r openRef) {
		if !r.Write || seen[r.Ino] || r.Mode&unix.S_IFMT != unix.S_IFREG {
			return
		}
		seen[r.Ino] = true
		if r.Nlink == 0 {
			lk.st.orphans[r.Ino] = r
		}
		lk.fs.remapPath(lk.st, m, r.Ino, r.Via)
	})
	return len(seen) > 0
}

// byRegions names what the filesystem's own layout places: the XFS
// allocation group headers, log and inode chunks; the ext4 journal and
// the extent-tree blocks of files with deep trees.
func (lk *lookup) byRegions(unknown extent.Set) (extent.Set, error) {
	fs := lk.fs
	var regs []region
	if g := fs.caps.xfs; g != nil && !fs.caps.owners {
		b := unknown.Bounds()
		regs = append(regs, g.staticRegions(b.Start, b.End())...)
		chunks, err := g.inodeChunks(lk.root)
		if err == nil {
			regs = append(regs, chunks...)
		}
	}
	if sb := fs.caps.ext4; sb != nil {
		regs = append(regs, lk.ext4Regions(sb)...)
	}
	if len(regs) == 0 {
		return unknown, nil
	}
	si := newSetIndex(unknown)
	var cover []interval
	for _, rg := range regs {
		p := si.clip(rg.Start, rg.Start+rg.Len, nil)
		if len(p) == 0 {
			continue
		}
		cover = append(cover, interval{rg.Start, rg.Start + rg.Len})
		lk.c.metadata(metaKey{kind: rg.Kind, detail: rg.Detail, ino: rg.Ino}, p)
	}
	if len(cover) == 0 {
		return unknown, nil
	}
	return unknown.Subtract(unionSet(cover)), nil
}

// paths returns the absolute paths of ino.
func (lk *lookup) paths(ino uint64) []string {
	if lk.st == nil {
		return nil
	}
	if lk.dirCache == nil {
		lk.dirCache = map[uint64]string{}
	}
	rel := lk.st.names.paths(ino, lk.dirCache)
	out := make([]string, len(rel))
	for i, p := range rel {
		out[i] = path.Join(lk.fs.mount.Point, p)
	}
	return out
}

// openBy says, for an inode with no name, whether it was unlinked, the
// processes that hold it open and the path it had; /proc is read once per
// lookup.
func (lk *lookup) openBy(ino uint64) ([]int, string, bool) {
	if lk.open == nil {
		lk.open = map[uint64]openRef{}
		pids := map[uint64][]int{}
		_ = scanOpen(lk.fs.opts.Proc, lk.fs.dev, func(r openRef) {
			if r.Nlink != 0 {
				return
			}
			if _, ok := lk.open[r.Ino]; !ok {
				lk.open[r.Ino] = r
			}
			pids[r.Ino] = append(pids[r.Ino], r.Pid)
		})
		lk.pidsOf = pids
	}
	r, ok := lk.open[ino]
	if !ok {
		if lk.st != nil {
			if last, gone := lk.st.gone[ino]; gone {
				if last != "" {
					last = path.Join(lk.fs.mount.Point, last)
				}
				return nil, last, true
			}
		}
		return nil, "", false
	}
	pids := slices.Clone(lk.pidsOf[ino])
	slices.Sort(pids)
	return slices.Compact(pids), r.Path, true
}
