package stack

import (
	"math"
	"unsafe"
)

// Compiled is the compiled map of one mapped device: its table flattened
// through every level below it into one sorted list of pieces, each going
// from a range of the device's sectors straight to where they land, so
// that the I/O path makes one lookup per piece instead of one per level.
//
// A piece is one of:
//
//   - a leaf run: sectors [start, end) are sectors [start+d, end+d) of a
//     leaf, every level between being a pure translation (linear);
//   - a zero run: no backing store (the zero target), reads give zeros;
//   - a stripe: a periodic pattern over whole chunks (see Striper) whose
//     stripes each go to a leaf run, a zero run, or on to a lower map;
//   - a stripe whose stripe goes on (PlaceNext): the levels above are
//     pure, but the composition stops at a lower device (a stripe over a
//     device that is not one leaf run under each stripe: stripes of
//     stripes, or of a device of many segments); the lookup continues in
//     that device's compiled map;
//   - a step (PlaceStep): a level whose target has run-time behaviour
//     (IOMapper, Delayer, OpMapper, or an EndIOer that sees every
//     request: the segments the I/O path sends one Bio at a time), fails
//     I/O (an error target, a Map error), or is mapped past the end of
//     its child, or a target the build does not
//     flatten (neither one run per segment nor a Striper, past 64 runs):
//     the I/O path goes down from that level one level at a time, as
//     without a compiled map, and then on with the child's map.
//
// Pieces never bake in anything that can change without a table swap: a
// leaf's poison and loss are the leaf's to check at I/O time, as today; a
// target's state is the target's (such a target is a step). Levels whose
// targets only watch failures (ErrorEndIOer, such as striped) keep the
// piece flat and are listed in the piece's hook chain (see Place.Hooks).
//
// A Compiled is immutable and safe for concurrent use. It is exact for the
// active tables it was built from (Table, and its children's maps, Child):
// a table swap of the device or of any device below it makes it stale, and
// it must then be replaced (see CompiledMaps for rebuilding, and for the
// rules that keep I/O from seeing a stale map). The sizes of leaves are
// taken when it is built (a leaf's size does not change while it is open).
type Compiled struct {
	dev   *Device
	table *Table // the active table it was built from (nil: no table)
	size  uint64

	// The lookup: bucket b holds the index of the piece containing sector
	// b<<shift; a sector is found by reading its bucket and then the
	// pieces from there (a search when a bucket holds many).
	shift uint
	nb    uint64   // buckets covering [0, size); bkt[nb] and bkt[nb+1] point at the sentinel
	bkt   []uint32 // len nb+2
	pcs   []cpiece // sorted by end; the last is the sentinel [size, MaxUint64), a step

	leaves []*Dev             // leaf runs' leaves, by ref index
	maps   []*Compiled        // step pieces' maps, by ref index
	pats   []*stripePat       // stripe pieces' patterns, by ref index
	chains [][]Hook           // hook chains, by id; chains[0] is the empty chain
	kids   []childMap         // the compiled maps of the table's mapped children
	kidIx  map[*Dev]*Compiled // the same, when there are many
	stats  CompiledStats      // filled by the build
}

// cpiece is one piece: it covers the sectors from the previous piece's end
// (0 for the first) to end. base translates: for a leaf run the leaf
// sector is s+base, for a stripe the offset in the striped segment is
// s+base, for step pieces the sector on the step's device is s+base (all
// modulo 2^64).
type cpiece struct {
	end   uint64
	base  uint64
	ref   uint32 // kind<<refShift | index in the kind's table
	chain uint32 // hook chain id (0: none)
}

const (
	refShift = 29
	refMask  = 1<<refShift - 1
)

// The piece kinds, as stored in cpiece.ref. Both kStep and kAsk are steps
// for the I/O path; they differ for the reverse index: a kStep piece holds
// no data of any child (a past-the-end or failing range), a kAsk piece
// holds data the map does not place (a target with run-time behaviour,
// or a segment the build gave up on).
const (
	kLeaf = iota
	kZero
	kStripe
	kStep
	kAsk
)

type childMap struct {
	dev *Device
	m   *Compiled
}

// stripePat is the pattern of one striped segment: the segment offset rel
// of a sector gives chunk c = rel/chunk, stripe c%k, row c/k. Patterns are
// shared by the maps of every device above the striped one.
type stripePat struct {
	chunk, k       uint64
	cshift, kshift int8 // log2(chunk), log2(k); -1 when not a power of two
	pow2           bool // both are powers of two
	dst            []StripeDest
}

// StripeDest is where one stripe of a stripe piece goes: offset rel of
// the striped segment, in row rel/chunk/k, lands at Sector +
// row*chunk + rel%chunk of Leaf (PieceLeaf) or of Map's device
// (PieceNext: the lookup goes on there), or nowhere (PieceZero).
type StripeDest struct {
	Kind   PieceKind
	Leaf   *Dev
	Map    *Compiled
	Sector uint64
}

// PlaceKind says what a lookup found.
type PlaceKind uint8

const (
	// PlaceLeaf: the sectors are on Leaf from Sector on, for Run sectors.
	PlaceLeaf PlaceKind = iota
	// PlaceZero: the sectors have no backing store (reads give zeros,
	// writes are dropped), for Run sectors.
	PlaceZero
	// PlaceNext: continue with Map().Lookup(Sector); the Run sectors from
	// there are contiguous on Map's device.
	PlaceNext
	// PlaceStep: do the level of Map's device at Sector as the per-level
	// walk does (find the segment in Map().Table(), call its target), then
	// continue below it with Map().Child for a mapped child. Run sectors
	// are contiguous on Map's device; the step may split them further (at
	// a segment end, or where its target says).
	PlaceStep
)

func (k PlaceKind) String() string {
	switch k {
	case PlaceLeaf:
		return "leaf"
	case PlaceZero:
		return "zero"
	case PlaceNext:
		return "next"
	case PlaceStep:
		return "step"
	}
	return "place(?)"
}

// Place is the result of a lookup: where a sector of the compiled device
// lands, and how many sectors from it (Run, at least 1) land contiguously
// in the same way. Kind says which of Leaf and Map applies.
//
// It is four words, so that the compiler keeps it in registers: the I/O
// path looks one up for every piece.
type Place struct {
	Sector uint64 // on the leaf, or on the map's device
	Run    uint64
	dst    unsafe.Pointer // *Dev for PlaceLeaf, *Compiled for PlaceNext and PlaceStep
	info   uint64         // kind | hook chain id<<32
}

func place(kind PlaceKind, dst unsafe.Pointer, sector, run uint64, chain uint32) Place {
	return Place{Sector: sector, Run: run, dst: dst, info: uint64(kind) | uint64(chain)<<32}
}

// Kind returns what the lookup found.
func (p Place) Kind() PlaceKind { return PlaceKind(uint8(p.info)) }

// Leaf returns the leaf of a PlaceLeaf, else nil.
func (p Place) Leaf() *Dev {
	if p.Kind() != PlaceLeaf {
		return nil
	}
	return (*Dev)(p.dst)
}

// Map returns the map to go on with (PlaceNext) or whose device's level to
// do (PlaceStep), else nil.
func (p Place) Map() *Compiled {
	if k := p.Kind(); k != PlaceNext && k != PlaceStep {
		return nil
	}
	return (*Compiled)(p.dst)
}

// Hooks returns the id of the chain of EndIOer levels the sector passes
// through above where it lands (see Compiled.Hooks); 0 when none.
func (p Place) Hooks() uint32 { return uint32(p.info >> 32) }

// Hook is one level on a piece's path whose target watches outcomes
// (an ErrorEndIOer) without changing where I/O goes. The sector on Device of a
// looked-up sector s is Compiled.HookSector(s, h).
type Hook struct {
	Device  *Device
	Segment *Segment // in the table the map was built from
	Target  EndIOer
	Delta   uint64
}

// Device returns the device the map is for.
func (c *Compiled) Device() *Device { return c.dev }

// Table returns the active table the map was built from (nil when the
// device had none).
func (c *Compiled) Table() *Table { return c.table }

// Size returns the device's size in sectors when the map was built.
func (c *Compiled) Size() uint64 { return c.size }

// Child returns the compiled map of a mapped child of the map's table, as
// built with it (for the I/O path to continue below a step), or nil when
// dev is a leaf or not a child.
func (c *Compiled) Child(dev *Dev) *Compiled {
	if c.kidIx != nil {
		return c.kidIx[dev]
	}
	for i := range c.kids {
		if &c.kids[i].dev.dev == dev {
			return c.kids[i].m
		}
	}
	return nil
}

// Hooks returns hook chain id, top level first. The slice must not be
// modified.
func (c *Compiled) Hooks(id uint32) []Hook { return c.chains[id] }

// Lookup returns where sector s of the device lands. A sector at or past
// the device's size gives a step at the device itself (the per-level walk
// reports the error). It allocates nothing.
func (c *Compiled) Lookup(s uint64) Place {
	if s >= c.size {
		return place(PlaceStep, unsafe.Pointer(c), s, max(maxSector-s, 1), 0)
	}
	// find, by hand: the compiler does not inline a loop.
	b := s >> c.shift
	i, j := int(c.bkt[b]), int(c.bkt[b+1])
	if j-i > linearScan {
		i = c.search(i, j, s)
	} else {
		for c.pcs[i].end <= s {
			i++
		}
	}
	p := &c.pcs[i]
	idx := p.ref & refMask
	switch p.ref >> refShift {
	case kLeaf:
		return place(PlaceLeaf, unsafe.Pointer(c.leaves[idx]), s+p.base, p.end-s, p.chain)
	case kStripe:
		pt := c.pats[idx]
		if pt.pow2 { // the usual stripe, by shifts and masks, inline
			rel := s + p.base
			ch, intra := rel>>uint(pt.cshift), rel&(pt.chunk-1)
			d := &pt.dst[ch&(pt.k-1)]
			if d.Kind == PieceLeaf {
				return place(PlaceLeaf, unsafe.Pointer(d.Leaf), d.Sector+(ch>>uint(pt.kshift))<<uint(pt.cshift)+intra, min(p.end-s, pt.chunk-intra), p.chain)
			}
		}
		return pt.place(s+p.base, p.end-s, p.chain)
	case kZero:
		return place(PlaceZero, nil, 0, p.end-s, p.chain)
	default:
		return place(PlaceStep, unsafe.Pointer(c.maps[idx]), s+p.base, p.end-s, p.chain)
	}
}

// HookSector returns the sector on h.Device of sector s of the compiled
// device, for a hook h of the chain of Lookup(s). It searches again: the
// I/O path asks it once per request, not once per piece.
func (c *Compiled) HookSector(s uint64, h Hook) uint64 {
	return s + c.pcs[c.find(s)].base + h.Delta
}

// linearScan is the most pieces a lookup reads one after the other before
// it searches instead (a bucket holds 8 to 16 on average, see
// bucketShift).
const linearScan = 32

// find returns the index of the piece holding s (Lookup has a copy).
func (c *Compiled) find(s uint64) int {
	if s >= c.size {
		return len(c.pcs) - 1
	}
	b := s >> c.shift
	i, j := int(c.bkt[b]), int(c.bkt[b+1])
	if j-i <= linearScan {
		for c.pcs[i].end <= s {
			i++
		}
		return i
	}
	return c.search(i, j, s)
}

// search returns the first piece in [i, j] ending after s.
func (c *Compiled) search(i, j int, s uint64) int {
	for i < j {
		m := int(uint(i+j) >> 1)
		if c.pcs[m].end <= s {
			i = m + 1
		} else {
			j = m
		}
	}
	return i
}

// place resolves offset rel of the striped segment, with run sectors left
// in the piece.
func (pt *stripePat) place(rel, run uint64, chain uint32) Place {
	var c, intra uint64
	if pt.cshift >= 0 {
		c, intra = rel>>uint(pt.cshift), rel&(pt.chunk-1)
	} else {
		c, intra = rel/pt.chunk, rel%pt.chunk
	}
	var st, row uint64
	if pt.kshift >= 0 {
		st, row = c&(pt.k-1), c>>uint(pt.kshift)
	} else {
		st, row = c%pt.k, c/pt.k
	}
	run = min(run, pt.chunk-intra)
	d := &pt.dst[st]
	sector := d.Sector + row*pt.chunk + intra
	switch d.Kind {
	case PieceLeaf:
		return place(PlaceLeaf, unsafe.Pointer(d.Leaf), sector, run, chain)
	case PieceZero:
		return place(PlaceZero, nil, 0, run, chain)
	default:
		return place(PlaceNext, unsafe.Pointer(d.Map), sector, run, chain)
	}
}

// CompiledStats describes a compiled map's shape and memory.
type CompiledStats struct {
	Pieces   int // pieces, the sentinel included
	Stripes  int // stripe pieces
	Steps    int // step pieces (the sentinel included)
	Patterns int // distinct stripe patterns
	Chains   int // distinct non-empty hook chains
	Buckets  int
	Shift    uint // bucket width is 1<<Shift sectors
	Bytes    int  // memory held by this map alone (patterns it shares counted once, where built)
}

// Stats returns the map's shape and memory.
func (c *Compiled) Stats() CompiledStats { return c.stats }

// maxSector is the sentinel's end.
const maxSector = math.MaxUint64
