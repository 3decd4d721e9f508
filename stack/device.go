package stack

import (
	"context"
	"sync"
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

	active atomic.Pointer[Table]
	// cmap is the device's published compiled map, nil when the I/O path
	// must walk level by level (see compiled_pool.go).
	cmap      atomic.Pointer[Compiled]
	inactive  *Table // guarded by pool.mu
	suspended atomic.Bool
	removed   atomic.Bool
	readOnly  atomic.Bool
	eventNr   atomic.Uint64

	// held counts the requests that passed the device and wait outside
	// the gate (in a delay, or parked at a suspended device below) while
	// still using its table; a suspend waits for it to drop to zero.
	held atomic.Int64
	// opens counts the user handles open on the device (see Open).
	opens atomic.Int32

	// Delays: noDelay is set from the start of a suspend until the resume
	// (and for good at removal); delayWake is closed to let every waiting
	// request go at once.
	noDelay   atomic.Bool
	delayMu   sync.Mutex
	delayWake chan struct{}

	lc chan struct{} // one suspend, resume or remove of the device at a time
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

// Suspended reports whether the device is suspended (or being suspended):
// new I/O waits for Resume.
func (d *Device) Suspended() bool { return d.suspended.Load() }

// Removed reports whether the device was removed from its pool. I/O to it
// fails with an error matching ErrRemoved.
func (d *Device) Removed() bool { return d.removed.Load() }

// ReadOnly reports whether the device refuses writes (SetReadOnly).
func (d *Device) ReadOnly() bool { return d.readOnly.Load() }

// SetReadOnly makes the device refuse requests that change data (write,
// write-zeroes, discard) with EROFS, as a read-only block device does, or
// accept them again.
func (d *Device) SetReadOnly(ro bool) { d.readOnly.Store(ro) }

// EventNr returns the device's event counter, which daxstack bumps whenever
// the device's bad ranges change or a target reports an event.
func (d *Device) EventNr() uint64 { return d.eventNr.Load() }

// Event bumps the device's event counter and returns the new value.
func (d *Device) Event() uint64 { return d.eventNr.Add(1) }

// SetEventNr sets the event counter (used when restoring saved state).
func (d *Device) SetEventNr(n uint64) { d.eventNr.Store(n) }

// OpenCount returns the number of user handles open on the device (Open).
func (d *Device) OpenCount() int { return int(d.opens.Load()) }

// Open counts one more user of the device, as opening its block device
// does in the kernel: Remove refuses a device that is open. It fails with
// ErrRemoved once the device is gone. Every Open is paired with a Close.
func (d *Device) Open() error {
	p := d.pool
	p.mu.RLock() // against a Remove deciding whether d is busy
	defer p.mu.RUnlock()
	if d.removed.Load() {
		return errRemoved(d)
	}
	d.opens.Add(1)
	return nil
}

// Close ends one Open and returns the number of opens left.
func (d *Device) Close() int { return int(d.opens.Add(-1)) }

// ReadAt reads len(p) bytes at byte offset off through the device's stack,
// with io.ReaderAt semantics. A failing sector gives an *IOError.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.pool.submit(context.Background(), d, OpRead, p, off, int64(len(p)), false)
	return int(n), err
}

// WriteAt writes p at byte offset off through the device's stack, with
// io.WriterAt semantics. A failing sector gives an *IOError.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.pool.submit(context.Background(), d, OpWrite, p, off, int64(len(p)), false)
	return int(n), err
}

// Request is one client request: Op at byte Off, Len bytes (the length of
// Data for reads and writes; nothing for a flush).
type Request struct {
	Op   Op
	Off  int64
	Len  int64
	Data []byte
	FUA  bool // a write that is durable when it completes
}

// Do performs a request through the device's stack and returns how many
// bytes, from Off, were done. A read that reaches the end of the device
// returns what it got and io.EOF; a write past the end fails with ENOSPC;
// a failing sector gives an *IOError. A request waiting for a suspended
// device to resume, or held back by a delay target, ends when ctx does,
// with ctx's error.
//
// Requests are split where the stack's geometry says and, at each target
// that has run-time behaviour (IOMapper, Delayer, EndIOer), reach it as one
// Bio per segment (and per MaxIOLen window), before anything below splits
// them further; targets that only place sectors (linear, striped, zero)
// cost a lookup per contiguous piece.
func (d *Device) Do(ctx context.Context, r Request) (int64, error) {
	data := r.Data
	if r.Op == OpRead || r.Op == OpWrite {
		r.Len = int64(len(data))
	} else {
		data = nil
	}
	return d.pool.submit(ctx, d, r.Op, data, r.Off, r.Len, r.FUA)
}

// Flush makes every write that completed before it durable on the leaves
// below the device (see LeafSyncer), going to every segment's children, as
// an empty REQ_PREFLUSH bio goes to every target.
func (d *Device) Flush(ctx context.Context) error {
	_, err := d.pool.submit(ctx, d, OpFlush, nil, 0, 0, false)
	return err
}
