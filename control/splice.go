package control

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// ErrorRange and GoodRange splice error segments into a device's table the
// way fstests' _dmerror_mark_range_bad/good do, keeping the table before
// the first splice so that marking everything good again restores its
// text exactly.
func (e *Engine) ErrorRange(ctx context.Context, r RangeReq) error {
	return e.command(ctx, func() error { return e.spliceCommand(ctx, r, true) })
}

// GoodRange undoes ErrorRange for a range.
func (e *Engine) GoodRange(ctx context.Context, r RangeReq) error {
	return e.command(ctx, func() error { return e.spliceCommand(ctx, r, false) })
}

func (e *Engine) spliceCommand(ctx context.Context, r RangeReq, bad bool) error {
	d, err := e.lookup("reload", r.Name)
	if err != nil {
		return err
	}
	unlock, err := e.lockDevice(ctx, d)
	if err != nil {
		return opErr("reload", r.Name, d, err)
	}
	defer unlock()
	// Refuse what can be refused before the device is made quiet.
	if err := e.locked(func() error {
		_, _, err := e.spliced(d, r, bad)
		return err
	}); err != nil {
		return err
	}
	undo, err := e.quiet(ctx, d, "resume", true)
	if err != nil {
		return err
	}
	if err := e.run(func() error { return e.spliceRange(d, r, bad) }); err != nil {
		undo()
		return err
	}
	e.thaw(ctx, d)
	return nil
}

// spliced returns the lines of d's table with the error ranges r makes,
// built from the kept pristine table, and the ranges.
func (e *Engine) spliced(d *stack.Device, r RangeReq, bad bool) ([]stack.Line, extent.Set, error) {
	if err := e.pool.Live(d); err != nil {
		return nil, extent.Set{}, opErr("reload", r.Name, nil, err)
	}
	rec := e.record(d.Name())
	pristineText := tableText(d.Active())
	if rec.Pristine != nil {
		pristineText = rec.Pristine
	}
	if pristineText == nil {
		return nil, extent.Set{}, opErr("reload", r.Name, d, fmt.Errorf("%w: %s has no live table", stack.ErrInvalid, d.Name()))
	}
	if r.Count == 0 || r.Sector+r.Count > d.Size() || r.Sector+r.Count < r.Sector {
		return nil, extent.Set{}, opErr("", r.Name, d, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, d.Name(), d.Size()))
	}
	rng := extent.Of(extent.Extent{Start: r.Sector, Len: r.Count})
	ranges := rec.ErrorRanges
	if bad {
		ranges = ranges.Union(rng)
	} else {
		ranges = ranges.Subtract(rng)
	}
	lines, err := stack.ParseText(*pristineText, "")
	if err != nil {
		return nil, ranges, opErr("reload", r.Name, d, err)
	}
	if ranges.Empty() {
		return lines, ranges, nil
	}
	// Build the pristine table to the side to splice it.
	t, err := e.pool.Build(d, lines)
	if err != nil {
		return nil, ranges, opErr("reload", r.Name, d, err)
	}
	defer t.Destroy()
	lines, err = t.Splice(ranges)
	if err != nil {
		return nil, ranges, opErr("reload", r.Name, d, err)
	}
	return lines, ranges, nil
}

// spliceRange loads and swaps in d's spliced table, in the running
// command. The stateful targets of the new table's pieces get the state of
// the live target they continue (stack.Splitter): a piece of a flakey
// target keeps its clock.
func (e *Engine) spliceRange(d *stack.Device, r RangeReq, bad bool) error {
	lines, ranges, err := e.spliced(d, r, bad)
	if err != nil {
		return err
	}
	rec := e.record(d.Name())
	pristineText := rec.Pristine
	if pristineText == nil {
		pristineText = tableText(d.Active())
	}
	t, err := e.pool.Build(d, lines)
	if err != nil {
		return opErr("reload", r.Name, d, err)
	}
	if err := carryStates(d.Active(), t); err != nil {
		t.Destroy()
		return opErr("reload", r.Name, d, err)
	}
	if err := e.pool.LoadTable(d, t); err != nil {
		t.Destroy()
		return opErr("reload", r.Name, d, err)
	}
	if err := e.swap(d); err != nil {
		return opErr("resume", r.Name, d, err)
	}
	rec = e.record(d.Name())
	if ranges.Empty() {
		rec.Pristine, rec.ErrorRanges = nil, extent.Set{}
	} else {
		rec.Pristine, rec.ErrorRanges = pristineText, ranges
	}
	e.setRecord(rec)
	return nil
}

// carryStates gives every stateful segment of nt the state of the live
// segment of old that covers its first sector with the same target type:
// the target it is a piece of, or a piece of the same target.
func carryStates(old, nt *stack.Table) error {
	if old == nil {
		return nil
	}
	segs := old.Segments()
	for _, seg := range nt.Segments() {
		s, ok := seg.Target.(stack.Stateful)
		if !ok {
			continue
		}
		i, found := old.Find(seg.Begin)
		if !found || segs[i].Type != seg.Type {
			continue
		}
		if os, ok := segs[i].Target.(stack.Stateful); ok {
			if err := s.Restore(os.State()); err != nil {
				return fmt.Errorf("%s piece at %d: %w", seg.Type, seg.Begin, err)
			}
		}
	}
	return nil
}

// pristineTables builds, to the side, the tables error-range keeps to
// restore (the devices' tables before their first splice), by device name.
// A kept table that no longer builds is left out. The caller destroys them
// (destroyAll).
func (e *Engine) pristineTables() map[string]*stack.Table {
	names := map[string]bool{}
	for n := range e.devs {
		names[n] = true
	}
	if e.op != nil {
		for n := range e.op.recs {
			names[n] = true
		}
	}
	out := map[string]*stack.Table{}
	for name := range names {
		rec := e.record(name)
		if rec.Pristine == nil {
			continue
		}
		d, err := e.pool.Device(name)
		if err != nil {
			continue
		}
		lines, err := stack.ParseText(*rec.Pristine, "")
		if err != nil {
			continue
		}
		if t, err := e.pool.Build(d, lines); err == nil {
			out[name] = t
		}
	}
	return out
}

func destroyAll(ts map[string]*stack.Table) {
	for _, t := range ts {
		t.Destroy()
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
