package stack

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
)

// Name limits, from the kernel's dm-ioctl.h (lengths include the NUL).
const (
	NameLen = 128 // DM_NAME_LEN
	UUIDLen = 129 // DM_UUID_LEN
)

// ErrLoop: a table would make a device depend on itself.
var ErrLoop = errno.New("device would depend on itself", syscall.ELOOP)

// Pool holds the mapped devices and leaves daxstack knows, and the graph
// they form. The zero Pool is not usable; call NewPool.
type Pool struct {
	mu      sync.RWMutex
	open    LeafOpener
	byName  map[string]*Device
	byUUID  map[string]*Device
	byMinor map[uint32]*Device
	leaves  map[string]*Dev // by Leaf.ID
	users   map[*Dev]int    // tables (either slot, any device) using each child
	holders map[*Dev]string // external holders

	gen   uint64 // bumped whenever an active table or the device set changes
	graph graphCache

	gate    gate
	resumeM sync.Mutex
	resumed *sync.Cond

	clock Clock      // given to targets (TargetInfo.Clock)
	rnd   *rand.Rand // given to targets (TargetInfo.Rand)
}

// NewPool returns an empty pool that opens leaves with open. open may be
// nil, in which case tables can only name mapped devices.
func NewPool(open LeafOpener) *Pool {
	p := &Pool{
		open:    open,
		byName:  map[string]*Device{},
		byUUID:  map[string]*Device{},
		byMinor: map[uint32]*Device{},
		leaves:  map[string]*Dev{},
		users:   map[*Dev]int{},
		holders: map[*Dev]string{},
		clock:   SystemClock{},
		rnd:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	p.resumed = sync.NewCond(&p.resumeM)
	return p
}

// CheckName checks a mapped device name as dmsetup and the kernel do.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: device name cannot be empty", ErrInvalid)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%w: Name \"%s\" invalid. It contains \"/\".", ErrInvalid, name)
	case name == "control" || name == "." || name == "..":
		return fmt.Errorf("%w: device name cannot be \"control\", \".\", or \"..\"", ErrInvalid)
	case len(name) >= NameLen:
		return fmt.Errorf("%w: Name \"%s\" too long.", ErrInvalid, name)
	}
	return nil
}

// CheckUUID checks a UUID's length as dmsetup does.
func CheckUUID(uuid string) error {
	if len(uuid) >= UUIDLen {
		return fmt.Errorf("%w: UUID \"%s\" too long.", ErrInvalid, uuid)
	}
	return nil
}

// Create adds a mapped device with no table, taking the lowest free minor.
func (p *Pool) Create(name, uuid string) (*Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	minor := uint32(0)
	for p.byMinor[minor] != nil {
		minor++
	}
	return p.create(name, uuid, minor)
}

// CreateMinor adds a mapped device with no table and the given minor.
func (p *Pool) CreateMinor(name, uuid string, minor uint32) (*Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byMinor[minor] != nil {
		return nil, fmt.Errorf("%w: minor %d is in use by %s", ErrExists, minor, p.byMinor[minor].Name())
	}
	return p.create(name, uuid, minor)
}

func (p *Pool) create(name, uuid string, minor uint32) (*Device, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := CheckUUID(uuid); err != nil {
		return nil, err
	}
	if p.byName[name] != nil {
		return nil, fmt.Errorf("%w: a device named %s exists", ErrExists, name)
	}
	if uuid != "" && p.byUUID[uuid] != nil {
		return nil, fmt.Errorf("%w: uuid %s is in use by %s", ErrExists, uuid, p.byUUID[uuid].Name())
	}
	d := &Device{pool: p, minor: minor}
	d.dev.md = d
	d.name.Store(&name)
	d.uuid.Store(&uuid)
	p.byName[name] = d
	if uuid != "" {
		p.byUUID[uuid] = d
	}
	p.byMinor[minor] = d
	p.gen++
	return d, nil
}

// Device finds a mapped device by name, /dev/mapper/NAME, or 0:minor.
func (p *Pool) Device(ref string) (*Device, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d := p.lookupMapped(ref); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

// DeviceByUUID finds a mapped device by UUID.
func (p *Pool) DeviceByUUID(uuid string) (*Device, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d := p.byUUID[uuid]; d != nil && uuid != "" {
		return d, nil
	}
	return nil, fmt.Errorf("%w: uuid %s", ErrNotFound, uuid)
}

func (p *Pool) lookupMapped(ref string) *Device {
	if ma, mi, ok := parseDevno(ref); ok {
		if ma == MappedMajor {
			return p.byMinor[mi]
		}
		return nil
	}
	return p.byName[strings.TrimPrefix(ref, MapperDir)]
}

// Devices returns every mapped device, sorted by name.
func (p *Pool) Devices() []*Device {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*Device, 0, len(p.byName))
	for _, d := range p.byName {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Device) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Leaves returns every leaf some table uses, sorted by reference.
func (p *Pool) Leaves() []*Dev {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*Dev, 0, len(p.leaves))
	for _, d := range p.leaves {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Dev) int { return strings.Compare(a.Ref(), b.Ref()) })
	return out
}

// Leaf finds a leaf some table uses by its ID.
func (p *Pool) Leaf(id string) (*Dev, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	d, ok := p.leaves[id]
	return d, ok
}

// Lookup resolves a device reference (as a table would name it) to a
// device the pool holds: a mapped device, or a leaf some table uses.
func (p *Pool) Lookup(ref string) (*Dev, error) {
	p.mu.RLock()
	if d := p.lookupMapped(ref); d != nil {
		p.mu.RUnlock()
		return &d.dev, nil
	}
	for _, l := range p.leaves {
		if l.leaf.Ref() == ref {
			p.mu.RUnlock()
			return l, nil
		}
	}
	p.mu.RUnlock()
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	d, ok := p.leaves[leaf.ID()]
	closeLeaf(leaf)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not used by any table", ErrNotFound, ref)
	}
	return d, nil
}

// getDevice is dm_get_device for a table being built. A reference the
// build has resolved and checked before gives the same device again without
// opening it or walking the graph: nothing it depends on can change while
// the pool is locked for the build.
func (b *builder) getDevice(ref string) (*Dev, error) {
	if d, ok := b.refs[ref]; ok {
		return d, nil
	}
	d, err := b.resolve(ref)
	if err == nil {
		b.refs[ref] = d
	}
	return d, err
}

func (b *builder) resolve(ref string) (*Dev, error) {
	p := b.p
	if ref == "" {
		return nil, fmt.Errorf("%w: empty device reference", ErrNotFound)
	}
	var dev *Dev
	if md := p.lookupMapped(ref); md != nil {
		dev = &md.dev
	} else if ma, mi, ok := parseDevno(ref); ok && ma == MappedMajor {
		return nil, fmt.Errorf("%w: no mapped device %d:%d", ErrNotFound, ma, mi)
	} else {
		l, err := b.openLeaf(ref)
		if err != nil {
			return nil, err
		}
		dev = l
	}
	if md := dev.md; md != nil {
		if md == b.dev {
			return nil, fmt.Errorf("%w: a table cannot use its own device %s", ErrInvalid, md.Name())
		}
		if path := p.pathTo(md, b.dev); path != nil {
			return nil, fmt.Errorf("%w: %s already uses %s (%s)", ErrLoop, md.Name(), b.dev.Name(), strings.Join(path, " -> "))
		}
	}
	if h, ok := p.holders[dev]; ok {
		return nil, fmt.Errorf("%w: %s is held by %s", ErrBusy, dev.Name(), h)
	}
	return dev, nil
}

func (b *builder) openLeaf(ref string) (*Dev, error) {
	p := b.p
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	id := leaf.ID()
	if d, ok := p.leaves[id]; ok {
		closeLeaf(leaf)
		return d, nil
	}
	if d, ok := b.opened[id]; ok {
		closeLeaf(leaf)
		return d, nil
	}
	d := &Dev{leaf: leaf}
	b.opened[id] = d
	return d, nil
}

// discard closes every leaf the build opened.
func (b *builder) discard() {
	for _, d := range b.opened {
		closeLeaf(d.leaf)
	}
	b.opened = nil
}

// discardUnused closes the leaves the build opened that t does not use.
func (b *builder) discardUnused(t *Table) {
	used := map[*Dev]bool{}
	for _, d := range t.children() {
		used[d] = true
	}
	for id, d := range b.opened {
		if !used[d] {
			closeLeaf(d.leaf)
			delete(b.opened, id)
		}
	}
}

func closeLeaf(l Leaf) {
	if c, ok := l.(io.Closer); ok {
		c.Close()
	}
}

// pathTo returns the chain of names from -> ... -> to if from reaches to
// through the tables in either slot, or nil.
func (p *Pool) pathTo(from, to *Device) []string {
	seen := map[*Device]bool{}
	var walk func(d *Device) []string
	walk = func(d *Device) []string {
		if d == to {
			return []string{d.Name()}
		}
		if seen[d] {
			return nil
		}
		seen[d] = true
		for _, t := range []*Table{d.active.Load(), d.inactive} {
			for _, c := range t.children() {
				if c.md != nil {
					if path := walk(c.md); path != nil {
						return append([]string{d.Name()}, path...)
					}
				}
			}
		}
		return nil
	}
	return walk(from)
}

// Load builds lines as a table for d and puts it in d's inactive slot,
// replacing any table there. On error nothing changes.
func (p *Pool) Load(d *Device, lines []Line) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	t, b, err := p.build(d, lines)
	if err != nil {
		b.discard()
		return err
	}
	b.discardUnused(t)
	for id, l := range b.opened {
		p.leaves[id] = l
	}
	p.retain(t)
	if d.inactive != nil {
		p.release(d.inactive)
	}
	d.inactive = t
	return nil
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

// release drops t's uses of its children, forgetting leaves nothing uses.
func (p *Pool) release(t *Table) {
	for _, c := range t.children() {
		p.users[c]--
		if p.users[c] > 0 {
			continue
		}
		delete(p.users, c)
		if c.leaf != nil && p.holders[c] == "" {
			delete(p.leaves, c.leaf.ID())
			closeLeaf(c.leaf)
		}
	}
}

// Clear drops d's inactive table, if any.
func (p *Pool) Clear(d *Device) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	if d.inactive != nil {
		p.release(d.inactive)
		d.inactive = nil
	}
	return nil
}

// Suspend stops new I/O to d (it waits until Resume) and returns when
// every I/O in flight has finished. Suspending a suspended device is a
// no-op.
func (p *Pool) Suspend(d *Device) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	if !d.suspended.Load() {
		d.suspended.Store(true)
		p.gate.synchronize()
	}
	return nil
}

// Resume makes d's inactive table (if one is loaded) active, suspending d
// first if needed so that no I/O sees both tables, and lets I/O flow again.
// Resuming a running device with no inactive table is a no-op, as in dm.
func (p *Pool) Resume(d *Device) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLive(d); err != nil {
		return err
	}
	if d.inactive != nil {
		if !d.suspended.Load() {
			d.suspended.Store(true)
			p.gate.synchronize()
		}
		old := d.active.Swap(d.inactive)
		d.inactive = nil
		if old != nil {
			p.release(old)
		}
		p.gen++
	}
	if d.suspended.Load() {
		p.resumeM.Lock()
		d.suspended.Store(false)
		p.resumed.Broadcast()
		p.resumeM.Unlock()
	}
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

// Remove deletes d. It refuses with ErrBusy while another table uses d or
// a holder claims it.
func (p *Pool) Remove(d *Device) error {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	if t := d.active.Swap(nil); t != nil {
		p.release(t)
	}
	if d.inactive != nil {
		p.release(d.inactive)
		d.inactive = nil
	}
	delete(p.byName, d.Name())
	if u := d.UUID(); u != "" {
		delete(p.byUUID, u)
	}
	delete(p.byMinor, d.minor)
	p.gen++
	// Wake I/O parked on a suspended device that is now gone.
	p.resumeM.Lock()
	d.suspended.Store(false)
	p.resumed.Broadcast()
	p.resumeM.Unlock()
	return nil
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
	delete(p.byName, d.Name())
	d.name.Store(&name)
	p.byName[name] = d
	p.gen++
	return nil
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
	return nil
}

// Claim makes holder the exclusive external holder of dev, as
// bd_prepare_to_claim does. It fails with ErrBusy if dev has a holder or is
// used by a mapped device's table; a leaf may be shared by many mapped
// devices, but not by a mapped device and an external holder.
func (p *Pool) Claim(dev *Dev, holder string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if holder == "" {
		return fmt.Errorf("%w: empty holder name", ErrInvalid)
	}
	if h, ok := p.holders[dev]; ok {
		if h == holder {
			return nil
		}
		return fmt.Errorf("%w: %s is held by %s", ErrBusy, dev.Name(), h)
	}
	if users := p.usersOf(dev); len(users) > 0 {
		return fmt.Errorf("%w: %s is used by mapped device %s", ErrBusy, dev.Name(), users[0].Name())
	}
	if dev.leaf != nil {
		p.leaves[dev.leaf.ID()] = dev
	}
	p.holders[dev] = holder
	return nil
}

// ClaimLeaf opens the leaf ref (if no table uses it yet) and claims it.
func (p *Pool) ClaimLeaf(ref, holder string) (*Dev, error) {
	if d, err := p.Device(ref); err == nil {
		return &d.dev, p.Claim(&d.dev, holder)
	}
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	dev, ok := p.leaves[leaf.ID()]
	if ok {
		closeLeaf(leaf)
	} else {
		dev = &Dev{leaf: leaf}
	}
	p.mu.Unlock()
	if err := p.Claim(dev, holder); err != nil {
		if !ok {
			closeLeaf(leaf)
		}
		return nil, err
	}
	return dev, nil
}

// Release ends holder's claim on dev. Releasing a claim one does not hold
// is an error.
func (p *Pool) Release(dev *Dev, holder string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.holders[dev]
	if !ok || (holder != "" && h != holder) {
		return fmt.Errorf("%w: %s is not held by %s", ErrNotFound, dev.Name(), holder)
	}
	delete(p.holders, dev)
	if dev.leaf != nil && p.users[dev] == 0 {
		delete(p.leaves, dev.leaf.ID())
		closeLeaf(dev.leaf)
	}
	return nil
}

// Holder returns dev's external holder, or "".
func (p *Pool) Holder(dev *Dev) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.holders[dev]
}

// Close closes every leaf the pool holds. The pool must not be used after.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for id, l := range p.leaves {
		if c, ok := l.leaf.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		delete(p.leaves, id)
	}
	return errors.Join(errs...)
}
