package control

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// Commands that change state: each runs in mutate, which makes its changes
// of the pool and of the engine one transaction with its records and
// events in the store.

// opState collects what a running command changed.
type opState struct {
	devices map[string]bool // device names whose records must be rewritten
	deleted map[string]bool // device names removed
	// recs are records being changed by the command in ways the pool does
	// not hold (error-range bookkeeping, a rename's move, read-only,
	// deferred removal): the base of the record written.
	recs     map[string]store.DeviceRecord
	leaves   map[string]bool                // leaf IDs whose records must be rewritten from their leaf
	leafRecs map[string]store.LeafRecord    // leaf records decided explicitly (a rescan's lost or restored)
	poison   map[string]bool                // leaf IDs whose poison list must be rewritten
	events   []rmapchain.Event              // events to log
	holders  map[string]*store.HolderRecord // nil value: delete
	changes  []DeviceChange                 // lifecycle changes to tell watchers after the commit
	undo     []func()                       // engine-side undo, last first, on failure
	after    []func()                       // run once the commit is done
	// taken are the pending changes the command took (put back on failure).
	takenLeaves  []string
	takenTargets []stack.TargetChange
}

func newOpState() *opState {
	return &opState{
		devices: map[string]bool{}, deleted: map[string]bool{}, recs: map[string]store.DeviceRecord{},
		leaves: map[string]bool{}, leafRecs: map[string]store.LeafRecord{},
		poison: map[string]bool{}, holders: map[string]*store.HolderRecord{},
	}
}

// mutate runs one state-changing command: fn changes the pool (in a
// stack.Txn) and notes what it changed in e.op; then every noted record
// and event is written in one transaction, the pool's changes are made
// final and the watchers told. On any failure (a refusal, a failed commit,
// a panic, which is a bug) the pool's changes and the engine's are undone:
// every run-time structure is as it was, and nothing is written. Called
// with e.mu held.
func (e *Engine) mutate(fn func() error) (err error) {
	if e.cfg.ReadOnly {
		return ErrReadOnly
	}
	if e.closed {
		return ErrClosed
	}
	e.op = newOpState()
	tx := e.pool.Begin()
	done := false
	defer func() {
		if done {
			return
		}
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrInternal, r)
		}
		tx.Rollback()
		e.undoOp()
		e.op = nil
	}()
	e.takePending()
	if err = fn(); err != nil {
		return err
	}
	e.takePending()
	committed, err := e.commit()
	if err != nil {
		return err
	}
	done = true
	tx.Commit()
	for _, fn := range e.op.after {
		fn()
	}
	changes := e.op.changes
	e.op = nil
	e.notify(committed, changes)
	return nil
}

// undoOp undoes the engine's side of a failed command.
func (e *Engine) undoOp() {
	op := e.op
	for i := len(op.undo) - 1; i >= 0; i-- {
		op.undo[i]()
	}
	e.pendMu.Lock()
	for _, id := range op.takenLeaves {
		e.pendLeaves[id] = true
	}
	e.pendTargets = append(op.takenTargets, e.pendTargets...)
	e.pendMu.Unlock()
}

// afterCommit runs fn once the running command has committed.
func (e *Engine) afterCommit(fn func()) { e.op.after = append(e.op.after, fn) }

// onUndo notes how to undo a change of the engine's own state.
func (e *Engine) onUndo(fn func()) { e.op.undo = append(e.op.undo, fn) }

// commit writes what the running command changed, in one store
// transaction, and returns the events it logged. A command that changed
// nothing writes nothing.
func (e *Engine) commit() ([]rmapchain.Event, error) {
	op := e.op
	now := e.cfg.Now()
	for _, ev := range op.events {
		if d, err := e.pool.Device(ev.Device); err == nil && !op.deleted[d.Name()] {
			d.Event()
			op.devices[d.Name()] = true
			e.onUndo(func() { d.SetEventNr(d.EventNr() - 1) })
		}
	}
	var devRecs []store.DeviceRecord
	for name := range op.devices {
		if op.deleted[name] {
			continue
		}
		if d, err := e.pool.Device(name); err == nil {
			devRecs = append(devRecs, e.deviceRecord(d, now))
		}
	}
	var leafRecs []store.LeafRecord
	for id := range op.leaves {
		if _, explicit := op.leafRecs[id]; explicit {
			continue
		}
		if l := e.daxLeafByID(id); l != nil {
			leafRecs = append(leafRecs, e.leafRecord(l, now))
		}
	}
	for _, r := range op.leafRecs {
		leafRecs = append(leafRecs, r)
	}
	poison := map[string]extent.Set{}
	for id := range op.poison {
		if l := e.daxLeafByID(id); l != nil {
			poison[id] = l.BadBlocks()
		}
	}
	if len(op.deleted)+len(devRecs)+len(leafRecs)+len(poison)+len(op.holders)+len(op.events) == 0 {
		return nil, nil
	}
	var committed []rmapchain.Event
	err := e.db.Update(func(tx *store.Tx) error {
		for name := range op.deleted {
			if err := tx.DeleteDevice(name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		for _, r := range devRecs {
			if err := tx.PutDevice(r); err != nil {
				return err
			}
		}
		for _, r := range leafRecs {
			if err := tx.PutLeaf(r); err != nil {
				return err
			}
		}
		for id, p := range poison {
			if err := tx.SetPoison(id, p); err != nil {
				return err
			}
		}
		for dev, h := range op.holders {
			if h == nil {
				if err := tx.DeleteHolder(dev); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			} else if err := tx.PutHolder(*h); err != nil {
				return err
			}
		}
		if len(op.events) > 0 {
			var err error
			if committed, err = tx.AppendEvents(op.events); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.commits.Add(1)
	// The store now matches the pool: refresh the cached records.
	for name := range op.deleted {
		delete(e.devs, name)
		delete(e.broken, name)
	}
	for _, r := range devRecs {
		e.devs[r.Name] = r
	}
	for _, r := range leafRecs {
		e.recs[r.ID] = r
	}
	for id, p := range poison {
		if p.Empty() {
			delete(e.poison, id)
		} else {
			e.poison[id] = p
		}
	}
	for dev, h := range op.holders {
		if h == nil {
			delete(e.holders, dev)
		} else {
			e.holders[dev] = *h
		}
	}
	return committed, nil
}

// notify tells the listeners and watchers what a commit did.
func (e *Engine) notify(evs []rmapchain.Event, changes []DeviceChange) {
	e.subMu.Lock()
	ls := slices.Clone(e.listeners)
	ws := make([]func([]DeviceChange), 0, len(e.watchers))
	for _, w := range e.watchers {
		ws = append(ws, w)
	}
	e.subMu.Unlock()
	if len(evs) > 0 {
		for _, fn := range ls {
			fn(evs)
		}
	}
	if len(changes) > 0 {
		for _, fn := range ws {
			fn(changes)
		}
	}
}

// record returns the record the running command builds on for device
// name: one it changed already, the stored one, or a new one.
func (e *Engine) record(name string) store.DeviceRecord {
	if e.op != nil {
		if r, ok := e.op.recs[name]; ok {
			return r
		}
	}
	if r, ok := e.devs[name]; ok {
		return r
	}
	return store.DeviceRecord{Name: name, Created: e.cfg.Now()}
}

// setRecord makes r the base of device r.Name's record in the running
// command, and notes it for writing.
func (e *Engine) setRecord(r store.DeviceRecord) {
	e.op.recs[r.Name] = r
	e.op.devices[r.Name] = true
}

// deviceRecord builds the stored record of d from the pool, on the base
// the command left (see record).
func (e *Engine) deviceRecord(d *stack.Device, now time.Time) store.DeviceRecord {
	r := e.record(d.Name())
	if r.Created.IsZero() {
		r.Created = now
	}
	r.Name, r.UUID, r.Minor = d.Name(), d.UUID(), d.Minor()
	if _, broken := e.broken[d.Name()]; !broken {
		r.Active, r.ActiveState = tableText(d.Active()), saveStates(d.Active())
		r.Inactive, r.InactiveState = tableText(d.Inactive()), saveStates(d.Inactive())
	}
	r.Suspended = d.Suspended()
	r.ReadOnly = d.ReadOnly()
	r.EventNr = d.EventNr()
	return r
}

// tableText is a table as stored: its stored text (see Table.StoredText),
// or nil for no table.
func tableText(t *stack.Table) *string {
	if t == nil {
		return nil
	}
	s := t.StoredText()
	return &s
}
