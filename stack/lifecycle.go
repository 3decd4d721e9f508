package stack

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Load builds lines as a table for d and puts it in d's inactive slot,
// replacing any table there. On error nothing changes.
func (p *Pool) Load(d *Device, lines []Line) error {
	gone, err := p.load(d, lines)
	if err != nil {
		return err
	}
	p.retire(gone)
	return nil
}

// load is Load under the pool's lock (released even if a constructor
// panics); it returns the table it replaced.
func (p *Pool) load(d *Device, lines []Line) (*Table, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return nil, err
	}
	t, b, err := p.build(d, lines)
	if err != nil {
		b.discard()
		return nil, err
	}
	b.discardUnused(t)
	p.adopt(b.opened)
	return p.install(d, t), nil
}

// LoadText parses text (see ParseText) and loads it into d's inactive slot.
func (p *Pool) LoadText(d *Device, text, source string) error {
	lines, err := ParseText(text, source)
	if err != nil {
		if te, ok := err.(*TableError); ok {
			te.Device = d.Name()
		}
		return err
	}
	return p.Load(d, lines)
}

// LoadTable puts t, built for d with Build and not changed since (a
// caller may have restored its targets' state), into d's inactive slot,
// replacing any table there.
func (p *Pool) LoadTable(d *Device, t *Table) error {
	gone, err := p.loadTable(d, t)
	if err != nil {
		return err
	}
	p.retire(gone)
	return nil
}

func (p *Pool) loadTable(d *Device, t *Table) (*Table, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return nil, err
	}
	if t.aside != p {
		return nil, fmt.Errorf("%w: the table was not built to the side by this pool, or is loaded already", ErrInvalid)
	}
	for _, c := range t.children() {
		if md := c.md; md != nil {
			if md.removed.Load() {
				return nil, fmt.Errorf("%w: %s was removed", ErrNotFound, md.Name())
			}
			if md == d || p.pathTo(md, d) != nil {
				return nil, fmt.Errorf("%w: %s already uses %s", ErrLoop, md.Name(), d.Name())
			}
		}
	}
	t.aside = nil
	p.unrefAside(t)
	return p.install(d, t), nil
}

// install puts t into d's inactive slot and returns the table it replaces.
// Called with p.mu held.
func (p *Pool) install(d *Device, t *Table) *Table {
	p.retain(t)
	old := d.inactive
	if old != nil {
		p.unuse(old)
	}
	d.inactive = t
	p.record(func() {
		p.mu.Lock()
		if d.inactive == t {
			p.unuse(t)
			d.inactive = old
			if old != nil {
				p.retain(old)
			}
		}
		p.mu.Unlock()
		t.destroy()
	})
	return old
}

// unrefAside drops the leaf references a table built to the side holds.
func (p *Pool) unrefAside(t *Table) {
	for _, c := range t.children() {
		if c.leaf != nil && p.refs[c] > 0 {
			if p.refs[c]--; p.refs[c] == 0 {
				delete(p.refs, c)
			}
		}
	}
}

// Live reports whether d is still in the pool (ErrNotFound once removed).
func (p *Pool) Live(d *Device) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.checkLive(d)
}

func (p *Pool) checkLive(d *Device) error {
	if p.byName[d.Name()] != d {
		return fmt.Errorf("%w: %s was removed", ErrNotFound, d.Name())
	}
	return nil
}

// retain counts t's children as used.
func (p *Pool) retain(t *Table) {
	for _, c := range t.children() {
		p.users[c]++
	}
}

// unuse drops t's uses of its children (the leaves nothing uses any more
// are closed by the next sweep).
func (p *Pool) unuse(t *Table) {
	for _, c := range t.children() {
		if p.users[c]--; p.users[c] <= 0 {
			delete(p.users, c)
		}
	}
}

// retire is the end of tables that left their device for good: their
// destructors run and the leaves nothing refers to any more are closed,
// now or, inside a transaction, at its Commit. Called without p.mu.
func (p *Pool) retire(ts ...*Table) {
	p.mu.Lock()
	if tx := p.txn; tx != nil {
		for _, t := range ts {
			if t != nil {
				tx.retired = append(tx.retired, t)
			}
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	for _, t := range ts {
		t.destroy()
	}
	p.mu.Lock()
	p.sweep()
	p.mu.Unlock()
}

// Clear drops d's inactive table, if any.
func (p *Pool) Clear(d *Device) error {
	p.mu.Lock()
	if err := p.checkLive(d); err != nil {
		p.mu.Unlock()
		return err
	}
	old := d.inactive
	if old != nil {
		p.unuse(old)
		d.inactive = nil
		p.record(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if d.inactive == nil {
				d.inactive = old
				p.retain(old)
			}
		})
	}
	p.mu.Unlock()
	p.retire(old)
	return nil
}

// Users returns the mapped devices whose tables (either slot) use dev.
func (p *Pool) Users(dev *Dev) []*Device {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.usersOf(dev)
}

func (p *Pool) usersOf(dev *Dev) []*Device {
	if p.users[dev] == 0 {
		return nil
	}
	var out []*Device
	for _, d := range p.byName {
		if slices.Contains(d.active.Load().children(), dev) || slices.Contains(d.inactive.children(), dev) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Device) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Rename gives d a new name.
func (p *Pool) Rename(d *Device, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	// As in dm_hash_rename, the new name must be free: the device's own
	// name is taken too.
	if p.byName[name] != nil {
		return fmt.Errorf("%w: Unable to change name on mapped device %s to one that already exists: %s", ErrBusy, d.Name(), name)
	}
	old := d.Name()
	p.rename(d, name)
	p.record(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.rename(d, old)
	})
	return nil
}

func (p *Pool) rename(d *Device, name string) {
	delete(p.byName, d.Name())
	d.name.Store(&name)
	p.byName[name] = d
	p.gen++
}

// SetUUID gives d a UUID. As in the kernel, a UUID can only be set once,
// must not be empty, and must not be in use.
func (p *Pool) SetUUID(d *Device, uuid string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	if uuid == "" {
		return fmt.Errorf("%w: Invalid new mapped device name or uuid string supplied.", ErrInvalid)
	}
	if err := CheckUUID(uuid); err != nil {
		return err
	}
	// dm_hash_rename's order: the new UUID must be free (the device's own
	// included), then the device must have none.
	if p.byUUID[uuid] != nil {
		return fmt.Errorf("%w: Unable to change uuid on mapped device %s to one that already exists: %s", ErrExists, d.Name(), uuid)
	}
	if cur := d.UUID(); cur != "" {
		return fmt.Errorf("%w: Unable to change uuid of mapped device %s to %s because uuid is already set to %s", ErrInvalid, d.Name(), uuid, cur)
	}
	d.uuid.Store(&uuid)
	p.byUUID[uuid] = d
	p.record(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.byUUID, uuid)
		none := ""
		d.uuid.Store(&none)
	})
	return nil
}

// lock takes d's lifecycle lock: one suspend, resume or remove of a
// device runs at a time, as the kernel's md->suspend_lock.
func (d *Device) lock(ctx context.Context) error {
	select {
	case d.lc <- struct{}{}:
		return nil
	default:
	}
	select {
	case d.lc <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Device) unlock() { <-d.lc }
