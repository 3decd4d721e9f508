package fsfiles

import (
	"cmp"
	"slices"

	"github.com/daxstack/daxstack/extent"
)

// Result is what a set of a device's sectors hits on its filesystem.
type Result struct {
	Mount  string // the mount point the paths are under
	FSType string // "xfs", "ext4"...
	Method string // how files were found: "getfsmap" (owners from reverse mapping) or "fiemap" (the index of a walk)

	Files     []FileRange     // file data hit, sorted by path then offset
	Metadata  []MetadataRange // metadata hit, sorted by sector
	Free      []extent.Run    // free space hit, device sectors, sorted
	Truncated bool            // more was hit than the limit let through
}

// FileRange is a range of one file's bytes that lies on bad sectors:
// Length bytes from Offset or, when Count > 1, Count such ranges Stride
// bytes apart (a strided bad set, such as a lost leaf under a stripe,
// hits a file that way). Ranges are exact to the sector: they are not cut
// at the end of the file, so the last range of a file may run past its
// size into its last block.
type FileRange struct {
	Inode     uint64
	Paths     []string // every name of the file (hard links), absolute, sorted; none if it has no name left
	Offset    uint64   // bytes
	Length    uint64   // bytes
	Stride    uint64   // bytes, when Count > 1
	Count     uint64   // copies; 1 for a plain range
	Unwritten bool     // preallocated and never written: it reads as zeros, no data is lost
	Deleted   bool     // unlinked: Paths holds its last name; still open by OpenBy, or, with none, being freed
	OpenBy    []int    // the processes that hold a deleted file open
}

// MetadataRange is a range of device sectors holding metadata: Kind says
// which; Path and Inode name the file or directory it belongs to when the
// filesystem says (directory blocks, extent maps, attribute forks);
// Detail says what else is known.
type MetadataRange struct {
	Kind    Kind
	Path    string
	Inode   uint64
	Detail  string
	Sectors extent.Run // device sectors (a strided run when the bad set is strided)
}

// fileKey groups the pieces of one file into ranges.
type fileKey struct {
	ino       uint64
	unwritten bool
}

// metaKey groups the pieces of one kind of metadata.
type metaKey struct {
	kind   Kind
	ino    uint64
	detail string
}

// collector gathers the pieces of a lookup: file pieces in file space (in
// 512-byte units, so that extent.Set coalesces them), metadata and free
// pieces in device sectors.
type collector struct {
	files  map[fileKey][]extent.Run
	meta   map[metaKey][]extent.Run
	free   []extent.Run
	pieces int
	limit  int // the most pieces kept before the lookup stops (a bound on work)
	keys   int // the most files, kinds of metadata and free runs kept (0: all)
	full   bool
}

// newCollector returns a collector that keeps at most maxPieces pieces
// and, when keys > 0, at most keys entries (files, kinds of metadata, free
// runs) in the order they are met: the entries past a lookup's limit would
// be cut anyway, and naming them (their paths) is most of the cost of a
// lookup that hits every file.
func newCollector(maxPieces, keys int) *collector {
	return &collector{files: map[fileKey][]extent.Run{}, meta: map[metaKey][]extent.Run{}, limit: maxPieces, keys: keys}
}

func (c *collector) take(n int) bool {
	if c.pieces+n > c.limit {
		c.full = true
		return false
	}
	c.pieces += n
	return true
}

// room reports whether a new entry can be kept.
func (c *collector) room() bool {
	if c.keys > 0 && len(c.files)+len(c.meta)+len(c.free) >= c.keys {
		c.full = true
		return false
	}
	return true
}

// file adds the device-sector pieces p of an extent at device sector
// start, which holds the file's bytes from logical on.
func (c *collector) file(k fileKey, start, logical uint64, p []extent.Run) {
	if _, ok := c.files[k]; !ok && !c.room() {
		return
	}
	if !c.take(len(p)) {
		return
	}
	base := logical / 512
	for _, r := range p {
		r.Start = base + (r.Start - start)
		c.files[k] = append(c.files[k], r)
	}
}

func (c *collector) metadata(k metaKey, p []extent.Run) {
	if _, ok := c.meta[k]; !ok && !c.room() {
		return
	}
	if c.take(len(p)) {
		c.meta[k] = append(c.meta[k], p...)
	}
}

func (c *collector) freeSpace(p []extent.Run) {
	for _, r := range p {
		if !c.room() || !c.take(1) {
			return
		}
		c.free = append(c.free, r)
	}
}

// result sorts and coalesces what was gathered and keeps at most limit
// entries (0: all), files first, then metadata, then free space. paths
// names the inodes; open says who holds a file with no name.
func (c *collector) result(limit int, paths func(ino uint64) []string, open func(ino uint64) (pids []int, last string, deleted bool)) Result {
	var r Result
	type fileRows struct {
		key   fileKey
		paths []string
		runs  []extent.Run
	}
	var fr []fileRows
	for k, runs := range c.files {
		fr = append(fr, fileRows{key: k, paths: paths(k.ino), runs: extent.FromRuns(runs...).Runs()})
	}
	for _, f := range fr {
		var pids []int
		deleted := false
		ps := f.paths
		if len(ps) == 0 {
			var last string
			if pids, last, deleted = open(f.key.ino); deleted && last != "" {
				ps = []string{last}
			}
		}
		for _, run := range f.runs {
			row := FileRange{Inode: f.key.ino, Paths: ps, Offset: run.Start * 512, Length: run.Len * 512, Count: run.Count,
				Unwritten: f.key.unwritten, Deleted: deleted, OpenBy: pids}
			if run.Count > 1 {
				row.Stride = run.Stride * 512
			}
			r.Files = append(r.Files, row)
		}
	}
	slices.SortFunc(r.Files, func(a, b FileRange) int {
		if c := cmp.Compare(firstPath(a.Paths), firstPath(b.Paths)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Inode, b.Inode); c != 0 {
			return c
		}
		return cmp.Compare(a.Offset, b.Offset)
	})
	for k, runs := range c.meta {
		p := ""
		if k.ino != 0 {
			if ps := paths(k.ino); len(ps) > 0 {
				p = ps[0]
			}
		}
		for _, run := range extent.FromRuns(runs...).Runs() {
			r.Metadata = append(r.Metadata, MetadataRange{Kind: k.kind, Path: p, Inode: k.ino, Detail: k.detail, Sectors: run})
		}
	}
	slices.SortFunc(r.Metadata, func(a, b MetadataRange) int {
		if c := cmp.Compare(a.Sectors.Start, b.Sectors.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.Kind, b.Kind)
	})
	r.Free = slices.Clone(extent.FromRuns(c.free...).Runs())
	r.Truncated = c.full
	if limit > 0 {
		n := limit
		cut := func(l int) int {
			k := min(l, n)
			n -= k
			if k < l {
				r.Truncated = true
			}
			return k
		}
		r.Files = r.Files[:cut(len(r.Files))]
		r.Metadata = r.Metadata[:cut(len(r.Metadata))]
		r.Free = r.Free[:cut(len(r.Free))]
	}
	return r
}

func firstPath(p []string) string {
	if len(p) == 0 {
		return "\xff" // files without a name sort last
	}
	return p[0]
}
