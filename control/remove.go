package control

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/daxstack/daxstack/stack"
)

// Remove removes a device: refused (ErrBusy) while a table uses it, a
// holder claims it, a user has it open, or the export hook says it is in
// use. With Force its table is replaced by an error table first (which
// stands even if the removal then fails); with Deferred a device in use is
// marked and removed when its last user goes, and the command succeeds.
func (e *Engine) Remove(ctx context.Context, r RemoveReq) error {
	return e.command(ctx, func() error {
		if r.Force {
			// dmsetup remove -f replaces the table first; the wipe stands
			// even if the removal then fails.
			if err := e.wipeDevice(ctx, r.Name); err != nil {
				return err
			}
		}
		return e.removeDevice(ctx, r.Name, r.Deferred)
	})
}

// removeDevice removes one device: the checks, the export hook, its I/O
// stopped and waited for (without the engine lock), then the removal in
// one transaction.
func (e *Engine) removeDevice(ctx context.Context, name string, deferred bool) error {
	d, err := e.lookup("remove", name)
	if err != nil {
		return err
	}
	unlock, err := e.lockDevice(ctx, d)
	if err != nil {
		return opErr("remove", name, d, err)
	}
	defer unlock()
	var busy error
	if err := e.locked(func() error { busy = e.removeRefusal(d); return nil }); err != nil {
		return err
	}
	if busy == nil {
		busy = e.beforeRemove(ctx, d.Name())
	}
	if busy != nil {
		if deferred && errors.Is(busy, stack.ErrBusy) {
			return e.markDeferred(d)
		}
		return opErr("remove", name, d, busy)
	}
	undo, err := e.quiet(ctx, d, "remove", false)
	if err != nil {
		return err
	}
	if err := e.run(func() error { return e.removeOne(d) }); err != nil {
		undo()
		return err
	}
	e.lcMu.Lock()
	delete(e.lc, d)
	e.lcMu.Unlock()
	return nil
}

// removeRefusal says why d cannot be removed now, or nil. Called with e.mu
// held.
func (e *Engine) removeRefusal(d *stack.Device) error {
	if err := e.pool.Live(d); err != nil {
		return err
	}
	if users := e.pool.Users(d.Dev()); len(users) > 0 {
		return fmt.Errorf("%w: %s is used by %s", stack.ErrBusy, d.Name(), joinNames(users))
	}
	if h := e.pool.Holder(d.Dev()); h != "" {
		return fmt.Errorf("%w: %s is held by %s", stack.ErrBusy, d.Name(), h)
	}
	if n := d.OpenCount(); n > 0 {
		return fmt.Errorf("%w: %s is open (%d)", stack.ErrBusy, d.Name(), n)
	}
	// A table error-range keeps to restore uses d as much as a live one:
	// removing d would make good-range fail, or splice back whatever
	// device takes the name next.
	pristine := e.pristineTables()
	defer destroyAll(pristine)
	for _, u := range sortedKeys(pristine) {
		if u != d.Name() && slices.Contains(pristine[u].Devs(), d.Dev()) {
			return fmt.Errorf("%w: %s is used by %s (in the table error-range keeps to restore)", stack.ErrBusy, d.Name(), u)
		}
	}
	return nil
}

// removeOne removes d, which is quiet, in the running command.
func (e *Engine) removeOne(d *stack.Device) error {
	name := d.Name()
	if err := e.pool.Remove(d); err != nil {
		return opErr("remove", name, d, err)
	}
	e.op.deleted[name] = true
	e.op.devices[name] = true
	e.change(DeviceChange{Kind: Removed, Device: name, Minor: d.Minor()})
	frozen := e.frozen[d]
	delete(e.frozen, d)
	e.onUndo(func() {
		if frozen {
			e.frozen[d] = true
		}
	})
	return nil
}

// markDeferred records that d goes when its last user does.
func (e *Engine) markDeferred(d *stack.Device) error {
	return e.run(func() error {
		if err := e.pool.Live(d); err != nil {
			return opErr("remove", d.Name(), nil, err)
		}
		r := e.record(d.Name())
		if !r.DeferredRemove {
			r.DeferredRemove = true
			e.setRecord(r)
		}
		return nil
	})
}

// deferredDue removes the devices marked by remove --deferred that nothing
// uses any more. It runs after every command (and when a user handle
// closes, or an export says its user went: Unused).
func (e *Engine) deferredDue(ctx context.Context) {
	for tries := 0; tries < 64; tries++ {
		var due []string
		e.locked(func() error {
			if e.cfg.ReadOnly {
				return nil
			}
			for _, name := range sortedKeys(e.devs) {
				if !e.devs[name].DeferredRemove {
					continue
				}
				if d, err := e.device(name); err == nil && e.removeRefusal(d) == nil {
					due = append(due, name)
				}
			}
			return nil
		})
		progress := false
		for _, name := range due {
			if e.removeDevice(ctx, name, true) == nil {
				if d, err := e.lookup("", name); err != nil || d == nil {
					progress = true
				}
			}
		}
		if !progress {
			return
		}
	}
}

// Unused tells the engine that a user of a device it cannot see (one the
// BeforeRemove hook reported: a filesystem unmounted, an NBD client gone)
// went: a deferred removal of the device happens now if nothing else uses
// it.
func (e *Engine) Unused(ctx context.Context, device string) {
	e.deferredDue(ctx)
}

// RemoveAll removes every device nothing uses, top first, repeating while
// that frees more; with Force each device's table is replaced by an error
// table first. Each removal is a transaction of its own. It fails with a
// *RemoveAllError counting the devices left.
func (e *Engine) RemoveAll(ctx context.Context, r RemoveReq) error {
	return e.command(ctx, func() error {
		for {
			progress := false
			var failed []error
			var devs []*stack.Device
			var heights map[*stack.Device]int
			if err := e.locked(func() error {
				g := e.pool.Graph()
				devs = e.pool.Devices()
				heights = map[*stack.Device]int{}
				for _, d := range devs {
					heights[d] = g.Height(d.Dev())
				}
				return nil
			}); err != nil {
				return err
			}
			slices.SortStableFunc(devs, func(a, b *stack.Device) int { return heights[b] - heights[a] })
			for _, d := range devs {
				if r.Force && len(e.pool.Users(d.Dev())) == 0 {
					if err := e.wipeDevice(ctx, d.Name()); err != nil {
						failed = append(failed, err)
						continue
					}
				}
				if err := e.removeDevice(ctx, d.Name(), false); err != nil {
					failed = append(failed, err)
				} else {
					progress = true
				}
			}
			if len(failed) == 0 {
				return nil
			}
			if !progress {
				return &RemoveAllError{Count: len(failed), Errs: failed}
			}
		}
	})
}

func joinNames(ds []*stack.Device) string {
	s := ""
	for i, n := range sortedNames(ds) {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
