package stack

import (
	"fmt"

	"github.com/daxstack/daxstack/extent"
)

// Splice returns the lines (parameters in the stored form, see
// Table.StoredText) of a table that maps like t except that the
// sectors in bad fail: they become error segments, and the segments around
// them are cut into pieces that keep their own mapping (a linear piece keeps
// its identity offset). This is how fstests' dmerror marks ranges bad. A cut
// a target cannot express (a striped segment cut inside a stripe row, a
// dust segment cut at all: see Splitter) is refused with ErrInvalid and
// the target's reason.
func (t *Table) Splice(bad extent.Set) ([]Line, error) {
	bad = bad.Clip(0, t.Size())
	var out []Line
	emit := func(start, n uint64, typ, params string) {
		if k := len(out); k > 0 && typ == "error" && out[k-1].Type == "error" && out[k-1].Params == "" && params == "" {
			out[k-1].Len += n
			return
		}
		out = append(out, Line{No: len(out) + 1, Start: start, Len: n, Type: typ, Params: params})
	}
	for i := range t.segs {
		seg := &t.segs[i]
		cut := bad.Clip(seg.Begin, seg.End())
		if cut.Empty() {
			emit(seg.Begin, seg.Len, seg.Type, storedParams(seg.Target))
			continue
		}
		pos := seg.Begin
		piece := func(a, b uint64) error {
			if a == seg.Begin && b == seg.End() {
				emit(a, b-a, seg.Type, storedParams(seg.Target))
				return nil
			}
			sp, ok := seg.Target.(Splitter)
			if !ok {
				return fmt.Errorf("%w: a %s segment cannot be cut", ErrInvalid, seg.Type)
			}
			params, err := sp.Split(a-seg.Begin, b-a)
			if err != nil {
				return fmt.Errorf("%w: sectors %d..%d of the %s segment at %d+%d cannot be a segment of their own: %w",
					ErrInvalid, a, b-1, seg.Type, seg.Begin, seg.Len, err)
			}
			emit(a, b-a, seg.Type, params)
			return nil
		}
		for e := range cut.Extents() {
			if e.Start > pos {
				if err := piece(pos, e.Start); err != nil {
					return nil, err
				}
			}
			emit(e.Start, e.Len, "error", "")
			pos = e.End()
		}
		if pos < seg.End() {
			if err := piece(pos, seg.End()); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
