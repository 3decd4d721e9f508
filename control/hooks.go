package control

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/daxstack/daxstack/stack"
)

// What exports (a FUSE file and a loop device over it, an NBD export)
// hold on to: lifecycle changes of devices, and hooks the engine consults
// before it removes, suspends and resumes one. Exports do their I/O
// through internal handles (OpenInternal), which never count as users.

// ChangeKind says what happened to a device.
type ChangeKind string

// The lifecycle changes watchers hear of.
const (
	Created   ChangeKind = "created"   // a new device (Size: its size, 0 without a table)
	Removed   ChangeKind = "removed"   // the device is gone
	Renamed   ChangeKind = "renamed"   // Device is the new name, OldName the old one
	Swapped   ChangeKind = "swapped"   // a new table is live (Size: its size)
	Suspended ChangeKind = "suspended" // new I/O waits until a resume
	Resumed   ChangeKind = "resumed"   // I/O flows again
	ReadOnly  ChangeKind = "readonly"  // the read-only flag is now ReadOnly
)

// DeviceChange is one lifecycle change of a mapped device, told to
// watchers after the commit that made it.
type DeviceChange struct {
	Kind     ChangeKind
	Device   string // the device's name (the new one for Renamed)
	OldName  string // Renamed: the name it had
	Minor    uint32
	Size     uint64 // sectors: Created, Swapped
	ReadOnly bool   // Created, ReadOnly
}

// DeviceState is a device as a watcher finds it when it starts.
type DeviceState struct {
	Device    string
	Minor     uint32
	Size      uint64 // sectors (0: no live table)
	Suspended bool
	ReadOnly  bool
}

// Watch calls fn after every commit that changed devices' lifecycle, in
// commit order, with the changes of the commit (a create that also makes a
// table live gives Created then Swapped). It returns the devices as they
// are when the watch starts (so no change is missed between the two) and a
// function that ends the watch. fn is called at the end of the commit,
// with the engine's lock held: it must not call the engine or do I/O
// through it, only note the changes (and apply them elsewhere; the Settle
// hook lets a command wait for that).
func (e *Engine) Watch(fn func([]DeviceChange)) (now []DeviceState, stop func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.pool.Devices() {
		now = append(now, DeviceState{Device: d.Name(), Minor: d.Minor(), Size: d.Size(), Suspended: d.Suspended(), ReadOnly: d.ReadOnly()})
	}
	e.subMu.Lock()
	id := e.nextWatch
	e.nextWatch++
	e.watchers[id] = fn
	e.subMu.Unlock()
	return now, func() {
		e.subMu.Lock()
		delete(e.watchers, id)
		e.subMu.Unlock()
	}
}

// Hooks are what the daemon's exports do around the lifecycle of the
// devices they serve. Each is called without the engine's lock (it may do
// I/O through internal handles, which a filesystem's flush does) and may
// be nil. A hook's error refuses the command it was called for, which then
// changes nothing.
type Hooks struct {
	// BeforeRemove is consulted before a device is removed (remove,
	// remove -f, remove_all, a deferred removal coming due). It returns
	// nil once whatever it serves on the device is torn down (the loop
	// device detached), or an error matching stack.ErrBusy while the
	// device is in use (a mounted filesystem, an NBD client): the removal
	// is refused, or, for remove --deferred, waits until the hook's user
	// goes and the export calls Engine.Unused.
	BeforeRemove func(ctx context.Context, device string) error
	// Freeze is called before a device is suspended (a suspend without
	// --nolockfs, or the suspend a resume makes before it swaps tables),
	// before its I/O stops, as dm's lockfs freezes the filesystem on it
	// (FIFREEZE) so that it flushes first. Thaw is called once the device
	// runs again (the resume, or a suspend that failed), for every Freeze
	// that succeeded.
	Freeze func(ctx context.Context, device string) error
	Thaw   func(ctx context.Context, device string) error
	// Settle is called at the end of every command (after a deferred
	// removal it let come due), whatever its outcome, and returns once
	// the exports follow the changes the command made: create, resume,
	// rename and remove return only when the block device and its links
	// are in place (or gone), as dmsetup does with udev.
	Settle func(ctx context.Context)
	// BlockDev names the block device that exports a device ("" for
	// none), for info. It is called with the engine's lock held and
	// must not call the engine.
	BlockDev func(device string) string
	// Users counts the users of a device's exports that the engine does
	// not see itself (filesystems mounted from its block device, devices
	// stacked on it in sysfs, opens of its device file, NBD
	// connections), for info's Open count, as the kernel's open count
	// includes a mount. Called with the engine's lock held; must not call
	// the engine, and must not probe (no exclusive open, which a mount
	// racing with info would meet as EBUSY).
	Users func(device string) int
	// MayClaim is consulted for every mapped device a table built by a
	// command uses: as the kernel's dm opens its children exclusively, a
	// table over a device whose block device is mounted or held
	// exclusively by someone else is refused (its error, which matches
	// EBUSY, refuses the command). Called with the engine's lock held;
	// must not call the engine.
	MayClaim func(device string) error
	// Export tells whether a reference in a table (a path, major:minor,
	// an NBD URI) names one of the daemon's own exports, and of which
	// device: such a table is refused, since its I/O would leave through
	// the kernel and come back into the daemon. Called with the engine's
	// lock held; must not call the engine.
	Export func(ref string) (device string, ok bool)
}

// SetHooks sets the hooks the engine consults from now on.
func (e *Engine) SetHooks(h Hooks) {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	e.hooks = h
}

func (e *Engine) getHooks() Hooks {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	return e.hooks
}

// settle runs the Settle hook, if any.
func (e *Engine) settle(ctx context.Context) {
	if h := e.getHooks(); h.Settle != nil {
		h.Settle(ctx)
	}
}

// checkClaims refuses a table built by this command (not in before) that
// uses a mapped device the MayClaim hook says is in use.
func (e *Engine) checkClaims(before map[*stack.Table]bool) error {
	h := e.getHooks()
	if h.MayClaim == nil {
		return nil
	}
	for _, d := range e.pool.Devices() {
		for _, t := range []*stack.Table{d.Active(), d.Inactive()} {
			if t == nil || before[t] {
				continue
			}
			for _, c := range t.Devs() {
				if md := c.Mapped(); md != nil {
					if err := h.MayClaim(md.Name()); err != nil {
						return opErr("reload", d.Name(), d, err)
					}
				}
			}
		}
	}
	return nil
}

// exportUsers counts the users of device's exports, if a hook says.
func (e *Engine) exportUsers(device string) int {
	if h := e.getHooks(); h.Users != nil {
		return h.Users(device)
	}
	return 0
}

// blockDev names the block device exporting device, if a hook says.
func (e *Engine) blockDev(device string) string {
	if h := e.getHooks(); h.BlockDev != nil {
		return h.BlockDev(device)
	}
	return ""
}

// refuseExport refuses a table's reference to one of the daemon's own
// exports.
func (e *Engine) refuseExport(ref string) error {
	h := e.getHooks()
	if h.Export == nil {
		return nil
	}
	if dev, ok := h.Export(ref); ok {
		return fmt.Errorf("%w: %s is daxstack's own export of %s: name the device %s itself", stack.ErrInvalid, ref, dev, dev)
	}
	return nil
}

// freeze runs the Freeze hook for d (when lockfs) and remembers that a
// Thaw is owed.
func (e *Engine) freeze(ctx context.Context, d *stack.Device, lockfs bool) error {
	h := e.getHooks()
	if !lockfs || h.Freeze == nil {
		return nil
	}
	e.mu.Lock()
	frozen := e.frozen[d]
	e.mu.Unlock()
	if frozen {
		return nil
	}
	if err := h.Freeze(ctx, d.Name()); err != nil {
		return opErr("suspend", d.Name(), d, err)
	}
	e.mu.Lock()
	e.frozen[d] = true
	e.mu.Unlock()
	return nil
}

// thaw runs the Thaw hook for d if a Freeze is owed.
func (e *Engine) thaw(ctx context.Context, d *stack.Device) {
	e.mu.Lock()
	frozen := e.frozen[d]
	delete(e.frozen, d)
	e.mu.Unlock()
	if h := e.getHooks(); frozen && h.Thaw != nil {
		h.Thaw(ctx, d.Name())
	}
}

// beforeRemove consults the BeforeRemove hook for the named devices, in
// order, and returns the first refusal.
func (e *Engine) beforeRemove(ctx context.Context, names ...string) error {
	h := e.getHooks()
	if h.BeforeRemove == nil {
		return nil
	}
	for _, n := range names {
		if err := h.BeforeRemove(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// sortedNames returns the devices' names, sorted.
func sortedNames(ds []*stack.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name()
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
