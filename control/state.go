package control

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// Target state that outlives the process (stack.Stateful): every device
// record holds the state of the stateful targets of both its table slots,
// saved whenever the record is written (the command that loaded the table,
// a message, a commit after I/O that changed a state), and given back to
// the targets when a process builds the stored tables again. A state a
// target cannot read makes its device broken: it is reported, never
// replaced by a fresh one.

// saveStates returns the state of t's stateful targets.
func saveStates(t *stack.Table) []store.TargetState {
	var out []store.TargetState
	for i, seg := range t.Segments() {
		if s, ok := seg.Target.(stack.Stateful); ok {
			out = append(out, store.TargetState{Segment: i, Start: seg.Begin, Type: seg.Type, State: s.State()})
		}
	}
	return out
}

// restoreStates gives t's stateful targets their saved states.
func restoreStates(t *stack.Table, states []store.TargetState) error {
	segs := t.Segments()
	for _, st := range states {
		if st.Segment < 0 || st.Segment >= len(segs) || segs[st.Segment].Begin != st.Start || segs[st.Segment].Type != st.Type {
			return fmt.Errorf("%w: saved state of segment %d (%s at %d) does not fit the table", store.ErrCorrupt, st.Segment, st.Type, st.Start)
		}
		s, ok := segs[st.Segment].Target.(stack.Stateful)
		if !ok {
			return fmt.Errorf("%w: saved state for segment %d, whose %s target keeps none", store.ErrCorrupt, st.Segment, st.Type)
		}
		if err := s.Restore(st.State); err != nil {
			return fmt.Errorf("segment %d (%s at %d): the saved target state does not restore: %w", st.Segment, st.Type, st.Start, err)
		}
	}
	return nil
}

// failing returns the sectors of a device's table that fail by the state
// of its targets (stack.Failer), in device sectors.
func failing(t *stack.Table) extent.Set {
	var runs []extent.Run
	for _, seg := range t.Segments() {
		if f, ok := seg.Target.(stack.Failer); ok {
			for _, r := range f.Failing().Runs() {
				r.Start += seg.Begin
				runs = append(runs, r)
			}
		}
	}
	return extent.Disjoint(runs...)
}

// failingChanged records the events of a change of d's failing sectors
// from before to after (device sectors), as poison's: media errors for
// those that began to fail, cleared for those that stopped.
func (e *Engine) failingChanged(d *stack.Device, before, after extent.Set) {
	g := e.pool.Graph()
	now := e.cfg.Now()
	e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.MediaError, d.Dev(), after.Subtract(before), now)...)
	e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Cleared, d.Dev(), before.Subtract(after), now)...)
}

// targetChanged takes a change a target reported during I/O into the
// running command: its device's record (with the new state) and, when its
// table is still live, the events of the sectors that began or stopped
// failing. A change of a table that has left its device since is part of
// the swap that replaced it, whose events compared the failing sectors
// before and after.
func (e *Engine) targetChanged(g *stack.Graph, c stack.TargetChange, now time.Time) {
	d := c.Device
	if d.Removed() || (d.Active() != c.Table && d.Inactive() != c.Table) {
		return
	}
	e.touchDevice(d)
	if d.Active() != c.Table {
		return
	}
	begin := c.Table.Segments()[c.Segment].Begin
	shift := func(s extent.Set) extent.Set {
		if s.Empty() {
			return s
		}
		return s.Shift(int64(begin))
	}
	e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.MediaError, d.Dev(), shift(c.Added), now)...)
	e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Cleared, d.Dev(), shift(c.Cleared), now)...)
}

// seeded returns a random source seeded with *seed, or nil for none.
func seeded(seed *uint64) *rand.Rand {
	if seed == nil {
		return nil
	}
	return rand.New(rand.NewPCG(*seed, *seed))
}
