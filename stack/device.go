package stack

import (
	"sync/atomic"
)

// Device is a mapped device: a name, an optional UUID, a device number
// (MappedMajor:minor), and two table slots. The active table serves I/O;
// Load fills the inactive slot and Resume swaps it in.
type Device struct {
	dev   Dev
	pool  *Pool
	minor uint32

	name atomic.Pointer[string]
	uuid atomic.Pointer[string]

	active    atomic.Pointer[Table]
	inactive  *Table // guarded by pool.mu
	suspended atomic.Bool
	eventNr   atomic.Uint64
}

// Name returns the device's name.
func (d *Device) Name() string { return *d.name.Load() }

// UUID returns the device's UUID, or "" if it has none.
func (d *Device) UUID() string { return *d.uuid.Load() }

// Minor returns the device's minor number; its major is MappedMajor.
func (d *Device) Minor() uint32 { return d.minor }

// Dev returns the device as a node of the device graph.
func (d *Device) Dev() *Dev { return &d.dev }

// Size returns the size of the active table in sectors (0 with no table).
func (d *Device) Size() uint64 { return d.active.Load().Size() }

// Active returns the active table, or nil.
func (d *Device) Active() *Table { return d.active.Load() }

// Inactive returns the table loaded into the inactive slot, or nil.
func (d *Device) Inactive() *Table {
	d.pool.mu.RLock()
	defer d.pool.mu.RUnlock()
	return d.inactive
}

// Suspended reports whether the device is suspended: new I/O waits for
// Resume.
func (d *Device) Suspended() bool { return d.suspended.Load() }

// EventNr returns the device's event counter, which daxstack bumps whenever
// the device's bad ranges change or a target reports an event.
func (d *Device) EventNr() uint64 { return d.eventNr.Load() }

// Event bumps the device's event counter and returns the new value.
func (d *Device) Event() uint64 { return d.eventNr.Add(1) }

// SetEventNr sets the event counter (used when restoring saved state).
func (d *Device) SetEventNr(n uint64) { d.eventNr.Store(n) }

// ReadAt reads len(p) bytes at byte offset off through the device's stack,
// with io.ReaderAt semantics. A failing sector gives an *IOError.
func (d *Device) ReadAt(p []byte, off int64) (int, error) { return d.pool.do(d, p, off, false) }

// WriteAt writes p at byte offset off through the device's stack, with
// io.WriterAt semantics. A failing sector gives an *IOError.
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return d.pool.do(d, p, off, true) }
