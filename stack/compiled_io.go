package stack

import "errors"

// The I/O path over a compiled map. A section that finds its top device's
// map published (Device.cmap, loaded once, after gate.enter) does the
// request one piece at a time with one lookup per piece, whatever the
// number of levels, and asks no device whether it is suspended: the map
// was published while none under it was, and a suspend of any of them
// unpublishes it first and then waits for this section (see
// CompiledMaps). At the first piece the map leaves to the levels (a step:
// a target with run-time behaviour, a failing range, a target the build
// did not flatten), the rest of the request goes the per-level way
// (pieces, then the request path) in the same section, trusting the same
// devices. The parts a compiled section does are exactly those the
// per-level fast path would have done before reaching that byte: the same
// leaves, the same bytes, the same failure watchers when a leaf fails.

// errStep stops a compiled section at a step piece.
var errStep = errors.New("a step: the per-level path takes over")

// compiledSection does as much of r, from byte done, as one gate section
// can, through top's published map c.
func (p *Pool) compiledSection(r *request, c *Compiled, done uint64, tok gateToken) (uint64, gateToken, error) {
	limit, endErr := r.limit(c.size, done) // the size of the table c was built from, which is top's
	k, err := p.compiledPieces(r, c, done, limit)
	if err == errStep {
		pass := passed{trust: true}
		var k2 uint64
		k2, err = p.pieces(r, done, done+k, limit, &pass)
		k += k2
		if err == errBioPath {
			k2, tok, err = p.bioFrom(r, done+k, limit, tok, &pass)
			k += k2
		}
	}
	if err == nil {
		err = endErr
	}
	return k, tok, err
}

// compiledPieces does bytes [from, limit) of r through c, one piece at a
// time, and returns how many it did; errStep, before doing anything of
// the piece, at a step.
func (p *Pool) compiledPieces(r *request, c *Compiled, from, limit uint64) (uint64, error) {
	done := from
	for done < limit {
		pos := r.off + done
		sector, intra := pos/SectorSize, pos%SectorSize
		pl := c.Lookup(sector)
		run := pl.Run
		for pl.Kind() == PlaceNext {
			pl = pl.Map().Lookup(pl.Sector)
			run = min(run, pl.Run)
		}
		var leaf *Dev
		switch pl.Kind() {
		case PlaceLeaf:
			leaf = pl.Leaf()
		case PlaceZero:
		default:
			return done - from, errStep
		}
		n := pieceBytes(run, intra, limit-done)
		at := pl.Sector*SectorSize + intra
		var m uint64
		var err error
		if r.op == OpRead && leaf != nil { // the usual piece, without leafIO's switch
			var k int
			k, err = leaf.leaf.ReadAt(r.data[done:done+n:done+n], int64(at))
			m = uint64(k)
		} else {
			m, err = p.leafIO(r, r.op, leaf, at, n, r.part(done, n))
		}
		done += m
		if err != nil {
			at := r.off + done
			return done - from, p.failed(r, from, limit, at, &IOError{Op: r.op.String(), Device: r.top.Name(), Sector: at / SectorSize, Err: err})
		}
	}
	return done - from, nil
}
