package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A model of daxstack's state, kept by the tests from the commands that
// succeeded, to compare with what the binary reports. It knows only what
// the README promises: tables as dmsetup prints them (children by leaf path
// or current device name), minors as the lowest free number, error-range
// splicing with identity offsets, bad sectors as the sectors whose read
// fails.

// mref is a child of a segment: a leaf (by index) or a mapped device (by
// the model's id, so that renames follow), at an offset.
type mref struct {
	leaf int // index into model.leaves, or -1
	dev  int // model id of a mapped device when leaf < 0
	off  uint64
}

// mseg is one segment of a table.
type mseg struct {
	start, n uint64
	typ      string // linear, striped or error
	chunk    uint64 // striped
	kids     []mref // linear: one; striped: one per stripe; error: none
}

// mtable is a table; tables are values and never changed in place.
type mtable []mseg

func (t mtable) size() uint64 {
	if len(t) == 0 {
		return 0
	}
	return t[len(t)-1].start + t[len(t)-1].n
}

// mdev is a mapped device.
type mdev struct {
	id                         int
	name, uuid                 string
	minor                      uint32
	size                       uint64 // every table a test gives it has this size
	active, inactive, pristine mtable
	errs                       []bool // error-range sectors (nil: none)
	suspended                  bool
}

// model is the state of one database and its leaves.
type model struct {
	leaves     []string // absolute paths
	leafSize   uint64
	devs       map[int]*mdev
	poison     [][]bool // per leaf, per sector
	nextID     int
	nextNameNo int
}

func newModel(leaves []string, leafSize uint64) *model {
	m := &model{leaves: leaves, leafSize: leafSize, devs: map[int]*mdev{}}
	for range leaves {
		m.poison = append(m.poison, make([]bool, leafSize))
	}
	return m
}

func (m *model) clone() *model {
	c := *m
	c.devs = make(map[int]*mdev, len(m.devs))
	for id, d := range m.devs {
		dd := *d
		dd.errs = slices.Clone(d.errs)
		c.devs[id] = &dd
	}
	c.poison = make([][]bool, len(m.poison))
	for i, p := range m.poison {
		c.poison[i] = slices.Clone(p)
	}
	return &c
}

// sorted returns the devices sorted by name, as daxstack lists them.
func (m *model) sorted() []*mdev {
	out := slices.Collect(maps.Values(m.devs))
	slices.SortFunc(out, func(a, b *mdev) int { return strings.Compare(a.name, b.name) })
	return out
}

// freeMinor is the lowest minor no device has.
func (m *model) freeMinor() uint32 {
	used := map[uint32]bool{}
	for _, d := range m.devs {
		used[d.minor] = true
	}
	var n uint32
	for used[n] {
		n++
	}
	return n
}

// children returns the ids of the mapped devices d's tables name (live,
// inactive, and the pristine table error-range keeps).
func (m *model) children(d *mdev) []int {
	var out []int
	for _, t := range []mtable{d.active, d.inactive, d.pristine} {
		for _, s := range t {
			for _, k := range s.kids {
				if k.leaf < 0 {
					out = append(out, k.dev)
				}
			}
		}
	}
	return out
}

// reaches reports whether from's tables lead to the device to.
func (m *model) reaches(from, to int) bool {
	seen := map[int]bool{}
	var walk func(id int) bool
	walk = func(id int) bool {
		if id == to {
			return true
		}
		if seen[id] {
			return false
		}
		seen[id] = true
		for _, c := range m.children(m.devs[id]) {
			if walk(c) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

// used reports whether another device's tables name d.
func (m *model) used(d *mdev) bool {
	for _, o := range m.devs {
		if o != d && slices.Contains(m.children(o), d.id) {
			return true
		}
	}
	return false
}

// leafUsed reports whether a live or inactive table names leaf i.
func (m *model) leafUsed(i int) bool {
	for _, d := range m.devs {
		for _, t := range []mtable{d.active, d.inactive} {
			for _, s := range t {
				for _, k := range s.kids {
					if k.leaf == i {
						return true
					}
				}
			}
		}
	}
	return false
}

func (m *model) refName(k mref) string {
	if k.leaf >= 0 {
		return m.leaves[k.leaf]
	}
	return m.devs[k.dev].name
}

// params is a segment's parameters as `dmsetup table` prints them.
func (m *model) params(s mseg) string {
	switch s.typ {
	case "linear":
		return fmt.Sprintf("%s %d", m.refName(s.kids[0]), s.kids[0].off)
	case "striped":
		p := fmt.Sprintf("%d %d", len(s.kids), s.chunk)
		for _, k := range s.kids {
			p += fmt.Sprintf(" %s %d", m.refName(k), k.off)
		}
		return p
	}
	return ""
}

// text is a table as it is given to daxstack.
func (m *model) text(t mtable) string {
	var lines []string
	for _, s := range t {
		lines = append(lines, strings.TrimSpace(fmt.Sprintf("%d %d %s %s", s.start, s.n, s.typ, m.params(s))))
	}
	return strings.Join(lines, "\n")
}

// locate maps sector rel of segment s (relative to its start) to a child
// and a child sector; ok is false for an error segment. Striped follows the
// kernel's stripe_map_sector: chunk c of the segment is on stripe c%#stripes,
// as that stripe's chunk c/#stripes.
func locate(s mseg, rel uint64) (k mref, sector uint64, ok bool) {
	switch s.typ {
	case "linear":
		return s.kids[0], s.kids[0].off + rel, true
	case "striped":
		n := uint64(len(s.kids))
		c := rel / s.chunk
		k := s.kids[c%n]
		return k, k.off + (c/n)*s.chunk + rel%s.chunk, true
	}
	return mref{}, 0, false
}

// bad returns, for each sector of device id's live table, whether a read
// of it fails: an error segment, poison on a leaf below, or a sector past
// the end of a child.
func (m *model) bad(id int, memo map[int][]bool) []bool {
	if b, ok := memo[id]; ok {
		return b
	}
	d := m.devs[id]
	out := make([]bool, d.active.size())
	for _, s := range d.active {
		for rel := range s.n {
			k, cs, ok := locate(s, rel)
			switch {
			case !ok:
				out[s.start+rel] = true
			case k.leaf >= 0:
				out[s.start+rel] = cs >= m.leafSize || m.poison[k.leaf][cs]
			default:
				cb := m.bad(k.dev, memo)
				out[s.start+rel] = cs >= uint64(len(cb)) || cb[cs]
			}
		}
	}
	memo[id] = out
	return out
}

// leafSectors maps a range of device id's live table to leaf sectors,
// skipping error segments, as inject does.
func (m *model) leafSectors(id int, start, count uint64, fn func(leaf int, sector uint64)) {
	d := m.devs[id]
	for sec := start; sec < start+count; sec++ {
		for _, s := range d.active {
			if sec < s.start || sec >= s.start+s.n {
				continue
			}
			k, cs, ok := locate(s, sec-s.start)
			switch {
			case !ok:
			case k.leaf >= 0:
				fn(k.leaf, cs)
			default:
				m.leafSectors(k.dev, cs, 1, fn)
			}
		}
	}
}

// splitSeg is the part [a, b) of segment s as a segment of its own:
// linear pieces keep identity offsets, striped pieces (cut at whole stripe
// rows) advance every stripe by the rows cut off.
func splitSeg(s mseg, a, b uint64) mseg {
	rel := a - s.start
	p := mseg{start: a, n: b - a, typ: s.typ, chunk: s.chunk}
	for _, k := range s.kids {
		switch s.typ {
		case "linear":
			k.off += rel
		case "striped":
			k.off += rel / uint64(len(s.kids))
		}
		p.kids = append(p.kids, k)
	}
	return p
}

// splice is the pristine table with the sectors in errs made error
// segments, as error-range documents it; neighbouring error segments
// print as one, as fstests' dmerror tables do.
func splice(pristine mtable, errs []bool) mtable {
	var out mtable
	emit := func(s mseg) {
		if k := len(out); k > 0 && s.typ == "error" && out[k-1].typ == "error" {
			out[k-1].n += s.n
			return
		}
		out = append(out, s)
	}
	for _, s := range pristine {
		end := s.start + s.n
		pos := s.start
		for pos < end {
			q := pos
			for q < end && errs[q] == errs[pos] {
				q++
			}
			switch {
			case errs[pos]:
				emit(mseg{start: pos, n: q - pos, typ: "error"})
			case pos == s.start && q == end:
				emit(s)
			default:
				emit(splitSeg(s, pos, q))
			}
			pos = q
		}
	}
	return out
}

func anyTrue(b []bool) bool { return slices.Contains(b, true) }
