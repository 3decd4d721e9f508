package stack

import (
	"context"
	"fmt"
	"strings"
)

// Suspend, resume and removal, as the kernel's dm_suspend, dm_resume and
// dm_hash_remove: each holds the device's lifecycle lock (one at a time
// per device) but holds the pool's lock only for its short parts, so that
// waiting for a device's I/O in flight never stops other devices' I/O,
// suspends or table changes.

// Suspend stops new I/O to d (it waits until Resume) and returns when
// every I/O in flight through d has finished. Suspending a suspended
// device is a no-op.
func (p *Pool) Suspend(d *Device) error { return p.SuspendContext(context.Background(), d) }

// SuspendContext is Suspend, giving up when ctx ends: the wait for the I/O
// in flight is then undone (SuspendUndoer) and d runs again.
//
// A suspend is not recorded in a transaction (it is made outside one, so
// that waiting for the I/O in flight holds no lock; see Txn): its undo is
// Restart.
//
// The steps: new I/O to d parks; its targets' delays stop making requests
// wait, and those waiting go on at once; PreSuspend; the wait for every
// request that passed d (those waiting in a delay below it, or parked at
// a suspended device below it after a target took them, included);
// PostSuspend.
func (p *Pool) SuspendContext(ctx context.Context, d *Device) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	defer d.unlock()
	p.mu.Lock()
	if err := p.checkLive(d); err != nil {
		p.mu.Unlock()
		return err
	}
	if d.suspended.Load() {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return p.quiesce(ctx, d)
}

// quiesce suspends running device d and waits for its I/O in flight (the
// caller holds d's lifecycle lock). If ctx ends first, it undoes the
// suspend and returns ctx's error.
func (p *Pool) quiesce(ctx context.Context, d *Device) error {
	p.mu.Lock()
	p.unpublishAbove(d) // before the flag: see CompiledMaps
	d.suspended.Store(true)
	p.mu.Unlock()
	d.stopDelays()
	t := d.active.Load()
	for i := range t.Segments() {
		if s, ok := t.segs[i].Target.(Suspender); ok {
			s.PreSuspend()
		}
	}
	p.gate.synchronize()
	if err := p.waitIdle(ctx, d); err != nil {
		for i := range t.Segments() {
			if s, ok := t.segs[i].Target.(SuspendUndoer); ok {
				s.PreSuspendUndo()
			}
		}
		d.startDelays()
		p.running(d)
		return err
	}
	for i := range t.Segments() {
		if s, ok := t.segs[i].Target.(Suspender); ok {
			s.PostSuspend()
		}
	}
	return nil
}

// Restart lets suspended device d run again without swapping tables (an
// inactive table stays where it is): the undo of a Suspend, for a caller
// whose command failed after it suspended the device. Its targets' Resume
// runs, then the I/O waiting goes on. A running device is left as it is.
// Like Suspend, it is not recorded in a transaction.
func (p *Pool) Restart(d *Device) error {
	if err := d.lock(context.Background()); err != nil {
		return err
	}
	defer d.unlock()
	p.mu.Lock()
	if err := p.checkLive(d); err != nil {
		p.mu.Unlock()
		return err
	}
	running := !d.suspended.Load()
	p.mu.Unlock()
	if !running {
		p.restart(d)
	}
	return nil
}

// restart resumes suspended device d without a table swap: its targets'
// Resume, delays, and the I/O that waits.
func (p *Pool) restart(d *Device) {
	t := d.active.Load()
	for i := range t.Segments() {
		if r, ok := t.segs[i].Target.(Resumer); ok {
			r.Resume()
		}
	}
	d.startDelays()
	p.running(d)
}

// Resume makes d's inactive table (if one is loaded) active, suspending d
// first if needed so that no I/O sees both tables, and lets I/O flow again
// (the active table's targets' Resume first). Resuming a running device
// with no inactive table is a no-op, as in dm.
func (p *Pool) Resume(d *Device) error { return p.ResumeContext(context.Background(), d) }

// ResumeContext is Resume, giving up when ctx ends while it waits for the
// I/O in flight of a running device before a swap (nothing then changes).
func (p *Pool) ResumeContext(ctx context.Context, d *Device) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	defer d.unlock()
	p.mu.Lock()
	if err := p.checkLive(d); err != nil {
		p.mu.Unlock()
		return err
	}
	wasSuspended := d.suspended.Load()
	if d.inactive == nil && !wasSuspended {
		p.mu.Unlock()
		return nil
	}
	if d.inactive != nil && !wasSuspended {
		p.mu.Unlock()
		if err := p.quiesce(ctx, d); err != nil {
			return err
		}
		p.mu.Lock()
	}
	var old, nt *Table
	if d.inactive != nil {
		nt = d.inactive
		old = p.swap(d)
	}
	p.record(func() { p.unresume(d, old, nt, wasSuspended) })
	p.mu.Unlock()
	p.restart(d)
	if nt != nil {
		p.retire(old)
	}
	return nil
}

// swap makes d's inactive table active and returns the one it replaces.
// Called with p.mu held, d suspended and idle.
func (p *Pool) swap(d *Device) *Table {
	old := d.active.Swap(d.inactive)
	d.inactive = nil
	if old != nil {
		p.unuse(old)
	}
	p.gen++
	p.rebuild(d) // before d runs again: see CompiledMaps
	return old
}

// unresume undoes a Resume: d is suspended again, the table it swapped in
// (nt, if any) goes back to the inactive slot with old live again, and d
// runs again unless it was suspended before.
func (p *Pool) unresume(d *Device, old, nt *Table, wasSuspended bool) {
	ctx := context.Background()
	if d.lock(ctx) != nil {
		return
	}
	defer d.unlock()
	if !d.suspended.Load() {
		p.quiesce(ctx, d)
	}
	p.mu.Lock()
	if nt != nil && d.active.Load() == nt {
		p.unuse(nt)
		d.active.Store(old)
		if old != nil {
			p.retain(old)
		}
		if d.inactive != nil {
			p.unuse(d.inactive)
		}
		d.inactive = nt
		p.retain(nt)
		p.gen++
		p.rebuild(d)
	}
	p.mu.Unlock()
	if !wasSuspended {
		p.restart(d)
	}
}

// Remove deletes d. It refuses with ErrBusy while another table uses d, a
// holder claims it or a user has it open (Device.Open).
func (p *Pool) Remove(d *Device) error { return p.RemoveContext(context.Background(), d) }

// RemoveContext is Remove, giving up when ctx ends while it waits for the
// I/O in flight through d (nothing then changes). A running device is
// suspended first; its delays let every waiting request go.
func (p *Pool) RemoveContext(ctx context.Context, d *Device) error {
	if err := d.lock(ctx); err != nil {
		return err
	}
	defer d.unlock()
	p.mu.Lock()
	if err := p.removable(d); err != nil {
		p.mu.Unlock()
		return err
	}
	wasSuspended := d.suspended.Load()
	p.mu.Unlock()
	if !wasSuspended {
		if err := p.quiesce(ctx, d); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if err := p.removable(d); err != nil { // something started using d meanwhile
		p.mu.Unlock()
		if !wasSuspended {
			p.restart(d)
		}
		return err
	}
	act, inact := d.active.Swap(nil), d.inactive
	d.inactive = nil
	if act != nil {
		p.unuse(act)
	}
	if inact != nil {
		p.unuse(inact)
	}
	p.unlink(d)
	d.removed.Store(true)
	p.maps.Forget(d)
	p.record(func() {
		p.mu.Lock()
		d.removed.Store(false)
		d.active.Store(act)
		d.inactive = inact
		if act != nil {
			p.retain(act)
		}
		if inact != nil {
			p.retain(inact)
		}
		p.insert(d)
		p.rebuild(d)
		p.mu.Unlock()
		if !wasSuspended {
			p.restart(d)
		}
	})
	p.mu.Unlock()
	p.broadcast() // I/O parked on d finds it gone
	p.retire(act, inact)
	return nil
}

// removable says why d cannot be removed, or nil.
func (p *Pool) removable(d *Device) error {
	if err := p.checkLive(d); err != nil {
		return err
	}
	if users := p.usersOf(&d.dev); len(users) > 0 {
		names := make([]string, len(users))
		for i, u := range users {
			names[i] = u.Name()
		}
		return fmt.Errorf("%w: %s is used by %s", ErrBusy, d.Name(), strings.Join(names, ", "))
	}
	if h, ok := p.holders[&d.dev]; ok {
		return fmt.Errorf("%w: %s is held by %s", ErrBusy, d.Name(), h)
	}
	if n := d.opens.Load(); n > 0 {
		return fmt.Errorf("%w: %s is open (%d)", ErrBusy, d.Name(), n)
	}
	return nil
}

// stopDelays makes d's delays let every waiting request go and not make
// new ones wait (see Delayer).
func (d *Device) stopDelays() {
	d.delayMu.Lock()
	defer d.delayMu.Unlock()
	if !d.noDelay.Load() {
		d.noDelay.Store(true)
		close(d.delayWake)
	}
}

// startDelays lets d's delays make requests wait again.
func (d *Device) startDelays() {
	d.delayMu.Lock()
	defer d.delayMu.Unlock()
	if d.noDelay.Load() && !d.removed.Load() {
		d.delayWake = make(chan struct{})
		d.noDelay.Store(false)
	}
}

// delayChan returns the channel closed when d's delays stop.
func (d *Device) delayChan() <-chan struct{} {
	d.delayMu.Lock()
	defer d.delayMu.Unlock()
	return d.delayWake
}

// errRemoved is the error of using a device that was removed.
func errRemoved(d *Device) error { return fmt.Errorf("%w: %s", ErrRemoved, d.Name()) }
