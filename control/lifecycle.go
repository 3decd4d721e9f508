package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// The dmsetup verbs that create, change and suspend devices.

// badSet returns every sector of d (unclipped: sectors past its end
// included) whose read fails, in the current graph.
func (e *Engine) badSet(d *stack.Dev) extent.Set {
	g := e.pool.Graph()
	in := map[*stack.Dev]bool{}
	for _, x := range g.Descendants(d) {
		in[x] = true
	}
	within := func(x *stack.Dev) bool { return in[x] }
	return rmapchain.Propagate(g, rmapchain.Sources(g, within), within)[d]
}

// tableChanged records the events of a table swap on d: its bad sectors
// before were `before` with size oldSize; those that became bad or good are
// translated up from d. d's own event is limited to sectors it had both
// before and after (a new or resized device reports no change of its tail).
func (e *Engine) tableChanged(d *stack.Device, before extent.Set, oldSize uint64) {
	after := e.badSet(d.Dev())
	g := e.pool.Graph()
	now := e.cfg.Now()
	keep := min(oldSize, d.Size())
	for _, k := range []struct {
		kind rmapchain.Kind
		s    extent.Set
	}{{rmapchain.MediaError, after.Subtract(before)}, {rmapchain.Cleared, before.Subtract(after)}} {
		for _, ev := range rmapchain.Translate(g, k.kind, d.Dev(), k.s, now) {
			if ev.Device == d.Name() {
				if ev.Ranges = ev.Ranges.Clip(0, keep); ev.Ranges.Empty() {
					continue
				}
			}
			e.op.events = append(e.op.events, ev)
		}
	}
}

// swap makes d's inactive table live (d is new, or suspended and idle:
// see quiet) and records the events and the change.
func (e *Engine) swap(d *stack.Device) error {
	wasSuspended := e.record(d.Name()).Suspended // by a user's suspend, not a quiet
	if d.Size() == 0 && len(e.pool.Users(d.Dev())) == 0 {
		// A device without a table and without users: no sector of it
		// existed before and nothing above it can see a change, so there
		// are no events to compute (this keeps bulk creation linear).
		if err := e.pool.Resume(d); err != nil {
			return err
		}
	} else {
		before, oldSize := e.badSet(d.Dev()), d.Size()
		if err := e.pool.Resume(d); err != nil {
			return err
		}
		// Parents print d by name and keep their text; only d's record changes.
		e.tableChanged(d, before, oldSize)
	}
	e.touchDevice(d)
	e.change(DeviceChange{Kind: Swapped, Device: d.Name(), Minor: d.Minor(), Size: d.Size()})
	if wasSuspended {
		e.change(DeviceChange{Kind: Resumed, Device: d.Name(), Minor: d.Minor()})
	}
	return nil
}

// quiet makes d suspended and idle before a command swaps its table, as
// the suspend a dm resume makes first (freezing a filesystem on it unless
// nolockfs), without the engine lock: waiting for d's I/O in flight stops
// no other command. The returned undo lets d run again (for a command that
// then fails); done thaws the filesystem once d runs again. A suspended
// device needs nothing.
func (e *Engine) quiet(ctx context.Context, d *stack.Device, op string, lockfs bool) (undo func(), err error) {
	if d.Suspended() {
		return func() {}, nil
	}
	if err := e.freeze(ctx, d, lockfs); err != nil {
		return nil, err
	}
	if err := e.pool.SuspendContext(ctx, d); err != nil {
		e.thaw(context.Background(), d)
		return nil, opErr(op, d.Name(), d, err)
	}
	return func() {
		e.pool.Restart(d)
		e.thaw(context.Background(), d)
	}, nil
}

// lookup finds a mapped device under the engine lock.
func (e *Engine) lookup(op, name string) (*stack.Device, error) {
	var d *stack.Device
	err := e.locked(func() error {
		var err error
		d, err = e.device(name)
		return opErr(op, name, nil, err)
	})
	return d, err
}

// Create creates a device and, with a table, makes it live.
func (e *Engine) Create(ctx context.Context, r CreateReq) error {
	return e.command(ctx, func() error { return e.runFor(ctx, func() error { return e.createOne(r) }) })
}

func (e *Engine) createOne(r CreateReq) error {
	d, err := e.pool.Create(r.Name, r.UUID)
	if err != nil {
		return opErr("create", r.Name, nil, err)
	}
	d.SetReadOnly(r.ReadOnly)
	e.touchDevice(d)
	e.change(DeviceChange{Kind: Created, Device: d.Name(), Minor: d.Minor(), ReadOnly: r.ReadOnly})
	if r.Table == nil {
		return nil
	}
	lines, err := stack.ParseText(*r.Table, r.Source)
	if err != nil {
		return opErr("", r.Name, d, err)
	}
	if len(lines) == 0 {
		return nil // empty stdin: a device with no table, as dmsetup
	}
	if err := e.pool.Load(d, lines); err != nil {
		return opErr("reload", r.Name, d, err)
	}
	return opErr("resume", r.Name, d, e.swap(d))
}

// CreateConcise creates the devices of dmsetup's concise format, in one
// transaction.
func (e *Engine) CreateConcise(ctx context.Context, r ConciseReq) error {
	devs, err := stack.ParseConcise(r.Spec)
	if err != nil {
		return opErr("", "", nil, err)
	}
	return e.command(ctx, func() error {
		return e.runFor(ctx, func() error {
			for _, c := range devs {
				text := strings.Join(c.Lines, "\n")
				if err := e.createOne(CreateReq{Name: c.Name, UUID: c.UUID, Table: &text, ReadOnly: c.ReadOnly}); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// Load loads a table into a device's inactive slot. Its targets are new:
// their state starts fresh.
func (e *Engine) Load(ctx context.Context, r LoadReq) error {
	return e.command(ctx, func() error {
		return e.runFor(ctx, func() error {
			d, err := e.device(r.Name)
			if err != nil {
				return opErr("reload", r.Name, nil, err)
			}
			lines, err := stack.ParseText(r.Table, r.Source)
			if err != nil {
				return opErr("", r.Name, d, err)
			}
			if err := e.pool.Load(d, lines); err != nil {
				return opErr("reload", r.Name, d, err)
			}
			e.touchDevice(d)
			e.forgetErrorRanges(d)
			return nil
		})
	})
}

// forgetErrorRanges drops error-range bookkeeping when a table is loaded
// by hand: the new table is the new pristine one.
func (e *Engine) forgetErrorRanges(d *stack.Device) {
	if r := e.record(d.Name()); r.Pristine != nil || !r.ErrorRanges.Empty() {
		r.Pristine, r.ErrorRanges = nil, extent.Set{}
		e.setRecord(r)
	}
}

// Resume makes the inactive table live, if any (suspending the device
// first: the filesystem on it is frozen unless NoLockfs), and resumes I/O.
func (e *Engine) Resume(ctx context.Context, r SuspendReq) error {
	return e.command(ctx, func() error {
		d, err := e.lookup("resume", r.Name)
		if err != nil {
			return err
		}
		unlock, err := e.lockDevice(ctx, d)
		if err != nil {
			return opErr("resume", r.Name, d, err)
		}
		defer unlock()
		if d.Inactive() == nil && !d.Suspended() {
			return nil // resuming a running device is a no-op, as in dm
		}
		undo, err := e.quiet(ctx, d, "resume", !r.NoLockfs)
		if err != nil {
			return err
		}
		err = e.run(func() error {
			if err := e.pool.Live(d); err != nil {
				return opErr("resume", r.Name, nil, err)
			}
			if d.Inactive() != nil {
				return opErr("resume", r.Name, d, e.swap(d))
			}
			if err := e.pool.Resume(d); err != nil {
				return opErr("resume", r.Name, d, err)
			}
			e.touchDevice(d)
			e.change(DeviceChange{Kind: Resumed, Device: d.Name(), Minor: d.Minor()})
			return nil
		})
		if err != nil {
			undo()
			return err
		}
		e.thaw(ctx, d)
		return nil
	})
}

// Suspend suspends a device: new I/O waits until resume, and the command
// returns once the I/O in flight has finished (freezing the filesystem on
// it first unless NoLockfs). Other devices' commands and I/O go on
// meanwhile; the wait ends with ctx, and then nothing changed.
func (e *Engine) Suspend(ctx context.Context, r SuspendReq) error {
	return e.command(ctx, func() error {
		d, err := e.lookup("suspend", r.Name)
		if err != nil {
			return err
		}
		unlock, err := e.lockDevice(ctx, d)
		if err != nil {
			return opErr("suspend", r.Name, d, err)
		}
		defer unlock()
		if d.Suspended() {
			return nil
		}
		undo, err := e.quiet(ctx, d, "suspend", !r.NoLockfs)
		if err != nil {
			return err
		}
		err = e.run(func() error {
			if err := e.pool.Live(d); err != nil {
				return opErr("suspend", r.Name, nil, err)
			}
			e.touchDevice(d)
			e.change(DeviceChange{Kind: Suspended, Device: d.Name(), Minor: d.Minor()})
			return nil
		})
		if err != nil {
			undo()
		}
		return err
	})
}

// Clear drops a device's inactive table.
func (e *Engine) Clear(ctx context.Context, r NameReq) error {
	return e.command(ctx, func() error {
		return e.run(func() error {
			d, err := e.device(r.Name)
			if err != nil {
				return opErr("clear", r.Name, nil, err)
			}
			if err := e.pool.Clear(d); err != nil {
				return opErr("clear", r.Name, d, err)
			}
			e.touchDevice(d)
			return nil
		})
	})
}

// WipeTable replaces a device's table with one error segment of the same
// size.
func (e *Engine) WipeTable(ctx context.Context, r NameReq) error {
	return e.command(ctx, func() error { return e.wipeDevice(ctx, r.Name) })
}

// wipeDevice loads one error segment over the whole device and resumes
// it, with the device quiet meanwhile.
func (e *Engine) wipeDevice(ctx context.Context, name string) error {
	d, err := e.lookup("reload", name)
	if err != nil {
		return err
	}
	if d.Size() == 0 {
		return nil
	}
	unlock, err := e.lockDevice(ctx, d)
	if err != nil {
		return opErr("reload", name, d, err)
	}
	defer unlock()
	undo, err := e.quiet(ctx, d, "resume", true)
	if err != nil {
		return err
	}
	err = e.run(func() error { return e.wipe(d) })
	if err != nil {
		undo()
		return err
	}
	e.thaw(ctx, d)
	return nil
}

func (e *Engine) wipe(d *stack.Device) error {
	name := d.Name()
	if err := e.pool.Live(d); err != nil {
		return opErr("reload", name, nil, err)
	}
	size := d.Size()
	if size == 0 {
		return nil
	}
	if err := e.pool.Load(d, []stack.Line{{No: 1, Start: 0, Len: size, Type: "error"}}); err != nil {
		return opErr("reload", name, d, err)
	}
	e.forgetErrorRanges(d)
	return opErr("resume", name, d, e.swap(d))
}

// Rename renames a device (its parents' tables follow), or sets its UUID.
func (e *Engine) Rename(ctx context.Context, r RenameReq) error {
	return e.command(ctx, func() error { return e.run(func() error { return e.rename(r) }) })
}

func (e *Engine) rename(r RenameReq) error {
	d, err := e.device(r.Name)
	if err != nil {
		return opErr("rename", r.Name, nil, err)
	}
	if r.SetUUID {
		if err := e.pool.SetUUID(d, r.New); err != nil {
			return opErr("rename", r.Name, d, err)
		}
		e.touchDevice(d)
		return nil
	}
	old := d.Name()
	pristine := e.pristineTables()
	defer destroyAll(pristine)
	if err := e.pool.Rename(d, r.New); err != nil {
		return opErr("rename", r.Name, d, err)
	}
	e.op.deleted[old] = true
	rec := e.record(old)
	rec.Name = r.New
	e.setRecord(rec)
	e.change(DeviceChange{Kind: Renamed, Device: r.New, OldName: old, Minor: d.Minor()})
	// Parents print d by name: their stored tables change too.
	for _, u := range e.pool.Users(d.Dev()) {
		e.touchDevice(u)
	}
	// So do the tables error-range keeps to restore: built before the
	// rename, they print the new name now.
	for name, t := range pristine {
		if name == old {
			name = r.New
		}
		rec := e.record(name)
		if text := t.StoredText(); rec.Pristine != nil && text != *rec.Pristine {
			rec.Pristine = &text
			e.setRecord(rec)
		}
	}
	if h, ok := e.holders[old]; ok {
		e.op.holders[old] = nil
		h.Device = r.New
		e.op.holders[r.New] = &h
	}
	return nil
}

// Message sends a message to the target at a sector. A target whose state
// it changes has the state saved; a change of the sectors it fails
// (stack.Failer) is logged as events, as poison's.
func (e *Engine) Message(ctx context.Context, r MessageReq) (MessageResp, error) {
	var reply string
	err := e.command(ctx, func() error {
		return e.run(func() error {
			d, err := e.device(r.Name)
			if err != nil {
				return opErr("message", r.Name, nil, err)
			}
			if len(r.Args) == 0 {
				return opErr("message", r.Name, d, fmt.Errorf("%w: Empty message received.", stack.ErrInvalid))
			}
			t := d.Active()
			i, ok := t.Find(r.Sector)
			if !ok {
				return opErr("message", r.Name, d, fmt.Errorf("%w: Target message sector outside device.", stack.ErrInvalid))
			}
			tg := t.Segments()[i].Target
			m, ok := tg.(stack.Messager)
			if !ok {
				return opErr("message", r.Name, d, fmt.Errorf("%w: Target type does not support messages", stack.ErrInvalid))
			}
			before := failing(t)
			if s, ok := tg.(stack.Stateful); ok {
				saved := s.State()
				e.onUndo(func() { s.Restore(saved) })
			}
			if reply, err = m.Message(r.Args); err != nil {
				return opErr("message", r.Name, d, err)
			}
			e.touchDevice(d)
			e.failingChanged(d, before, failing(t))
			return nil
		})
	})
	return MessageResp{Reply: reply}, err
}

// command runs a public command and then the deferred removals that came
// due (see RemoveReq.Deferred).
func (e *Engine) command(ctx context.Context, fn func() error) error {
	err := fn()
	if err == nil {
		e.deferredDue(ctx)
	}
	return err
}
