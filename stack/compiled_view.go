package stack

import "iter"

// PieceKind says what a piece of a compiled map is, as Compiled.Pieces
// shows it (Lookup answers with a PlaceKind).
type PieceKind uint8

const (
	// PieceLeaf: sectors [Start, End) are on Leaf from Sector on.
	PieceLeaf PieceKind = iota
	// PieceZero: no backing store.
	PieceZero
	// PieceStripe: a stripe pattern (Offset, Chunk, Stripes).
	PieceStripe
	// PieceNext: only as a StripeDest: on Map's device, whose map places
	// them.
	PieceNext
	// PieceStep: on Map's device from Sector on, where they hold no data
	// of any child: they fail there (an error target, a Map error, past
	// the end of a child).
	PieceStep
	// PieceAsk: on Map's device from Sector on, where a target with
	// run-time behaviour, or one the map does not flatten, places them.
	PieceAsk
)

func (k PieceKind) String() string {
	switch k {
	case PieceLeaf:
		return "leaf"
	case PieceZero:
		return "zero"
	case PieceStripe:
		return "stripe"
	case PieceNext:
		return "next"
	case PieceStep:
		return "step"
	case PieceAsk:
		return "ask"
	}
	return "piece(?)"
}

// CompiledPiece is one piece of a compiled map, as Pieces gives them.
type CompiledPiece struct {
	Start, End uint64 // sectors of the compiled device
	Kind       PieceKind
	Leaf       *Dev      // PieceLeaf
	Map        *Compiled // PieceStep, PieceAsk
	Sector     uint64    // of Start, on Leaf or on Map's device
	// A stripe: Start is offset Offset of the striped segment, whose
	// chunks of Chunk sectors go round robin to Stripes (see StripeDest).
	Offset, Chunk uint64
	Stripes       []StripeDest // shared: must not be modified
}

// Pieces returns the map's pieces in order, from sector 0 to the device's
// end (the past-the-end sentinel is left out).
func (c *Compiled) Pieces() iter.Seq[CompiledPiece] {
	return func(yield func(CompiledPiece) bool) {
		start := uint64(0)
		for i := range len(c.pcs) - 1 {
			p := &c.pcs[i]
			idx := p.ref & refMask
			v := CompiledPiece{Start: start, End: p.end, Sector: start + p.base}
			switch p.ref >> refShift {
			case kLeaf:
				v.Kind, v.Leaf = PieceLeaf, c.leaves[idx]
			case kZero:
				v.Kind, v.Sector = PieceZero, 0
			case kStripe:
				pt := c.pats[idx]
				v.Kind, v.Sector, v.Offset, v.Chunk, v.Stripes = PieceStripe, 0, start+p.base, pt.chunk, pt.dst
			case kStep:
				v.Kind, v.Map = PieceStep, c.maps[idx]
			default:
				v.Kind, v.Map = PieceAsk, c.maps[idx]
			}
			if !yield(v) {
				return
			}
			start = p.end
		}
	}
}

// Compile builds the compiled map of every mapped device of the snapshot
// from the snapshot's tables (not the live ones, which may have moved on),
// children before parents. Devices without a table get a map of no
// sectors.
func (g *Graph) Compile() map[*Device]*Compiled {
	out := make(map[*Device]*Compiled, len(g.devices))
	var get func(d *Device) *Compiled
	get = func(d *Device) *Compiled {
		if c, ok := out[d]; ok {
			return c
		}
		out[d] = nil // a cycle (refused at load) gets no map
		t := g.tables[d]
		for _, ch := range t.children() {
			if ch.md != nil {
				get(ch.md)
			}
		}
		c := compile(d, t, func(k *Device) *Compiled { return out[k] })
		out[d] = c
		return c
	}
	for _, d := range g.devices {
		get(d)
	}
	return out
}
