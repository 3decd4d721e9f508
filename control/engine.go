package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// Config says where the engine keeps its state and finds its devices.
type Config struct {
	DB          string        // database path (store.DefaultPath if empty)
	LockTimeout time.Duration // how long to wait for another daxstack process
	ReadOnly    bool          // open the database shared and refuse changes
	SysfsRoot   string        // "/sys" if empty (tests use fake trees)
	DevRoot     string        // "/dev" if empty
	Now         func() time.Time
	// Daemon marks the long-running engine of `daxstack serve`: it records
	// leaf loss and return, which embedded commands only display, and its
	// I/O to a suspended device waits for the resume (in a process that
	// nothing else could resume, it fails at once with EAGAIN).
	Daemon bool
	// Clock and Rand, when set, are what targets read the time and
	// chance from (stack.TargetInfo); tests make them repeatable.
	Clock stack.Clock
	Seed  *uint64
}

// Engine runs daxstack commands against one database. It is safe for
// concurrent use; commands that change state run one at a time, I/O
// through handles runs beside them.
type Engine struct {
	cfg    Config
	db     *store.DB
	opener *dax.Opener
	pool   *stack.Pool // lives as long as the engine

	mu      sync.Mutex
	recs    map[string]store.LeafRecord   // stored leaf records, by ID
	poison  map[string]extent.Set         // stored (committed) poison lists, by leaf ID
	devs    map[string]store.DeviceRecord // stored device records, by name
	broken  map[string]error              // devices whose stored table failed to load
	holders map[string]store.HolderRecord // by device reference
	frozen  map[*stack.Device]bool        // filesystems frozen by a suspend (see Hooks)
	restore bool                          // loading stored tables (see openLeaf)
	op      *opState                      // the command running now
	closed  bool
	onClose func() // after Close (a throw-away engine removes its directory)

	refMu sync.Mutex
	refs  map[string]*leafRef // the leaves the pool holds, by ID

	pendMu      sync.Mutex
	pendLeaves  map[string]bool      // leaves whose poison changed, not yet committed
	pendTargets []stack.TargetChange // targets' changes during I/O, not yet committed

	lcMu sync.Mutex
	lc   map[*stack.Device]chan struct{} // one lifecycle command per device

	commits atomic.Uint64 // store transactions written

	subMu     sync.Mutex
	listeners []func([]rmapchain.Event)
	watchers  map[int]func([]DeviceChange)
	nextWatch int
	hooks     Hooks
}

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

// Open opens the database (creating it unless read-only) and builds the
// device graph from it: every stored table is parsed and built, with its
// targets' saved state. The engine keeps that graph (the pool) for as long
// as it is open; commands change it in place and never rebuild it.
func Open(cfg Config) (*Engine, error) {
	if cfg.DB == "" {
		cfg.DB = store.DefaultPath
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := store.Open(cfg.DB, store.Options{Timeout: cfg.LockTimeout, ReadOnly: cfg.ReadOnly})
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, db: db, refs: map[string]*leafRef{}, frozen: map[*stack.Device]bool{},
		pendLeaves: map[string]bool{}, lc: map[*stack.Device]chan struct{}{}, watchers: map[int]func([]DeviceChange){}}
	e.opener = &dax.Opener{SysfsRoot: cfg.SysfsRoot, DevRoot: cfg.DevRoot, OnPoison: e.onPoison}
	e.pool = stack.NewPool(e.openLeaf)
	e.pool.SetNoWait(!cfg.Daemon)
	e.pool.SetTargetEnv(cfg.Clock, seeded(cfg.Seed))
	e.pool.OnTargetChange(e.onTargetChange)
	if err := e.load(); err != nil {
		e.pool.Close()
		db.Close()
		return nil, err
	}
	return e, nil
}

// Close releases the leaves and the database. Handles still open fail
// from then on.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.pool.Close()
	err := e.db.Close()
	if e.onClose != nil {
		e.onClose()
	}
	return err
}

// Stats are counters of an engine's work since it opened.
type Stats struct {
	Commits uint64 // store transactions written (a command that changed nothing writes none)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats { return Stats{Commits: e.commits.Load()} }

// DB returns the engine's store (the daemon reads the event log from it).
func (e *Engine) DB() *store.DB { return e.db }

// Listen registers fn to be called, after each commit, with the events the
// commit appended (with their sequence numbers).
func (e *Engine) Listen(fn func([]rmapchain.Event)) {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	e.listeners = append(e.listeners, fn)
}

// load builds the pool from the store, once, when the engine opens.
func (e *Engine) load() error {
	e.recs = map[string]store.LeafRecord{}
	e.poison = map[string]extent.Set{}
	e.devs = map[string]store.DeviceRecord{}
	e.broken = map[string]error{}
	e.holders = map[string]store.HolderRecord{}
	var devs []store.DeviceRecord
	err := e.db.View(func(tx *store.Tx) error {
		var err error
		if devs, err = tx.Devices(); err != nil {
			return err
		}
		leaves, err := tx.Leaves()
		if err != nil {
			return err
		}
		for _, l := range leaves {
			e.recs[l.ID] = l
			p, err := tx.Poison(l.ID)
			if err != nil {
				return err
			}
			if !p.Empty() {
				e.poison[l.ID] = p
			}
		}
		hs, err := tx.Holders()
		if err != nil {
			return err
		}
		for _, h := range hs {
			e.holders[h.Device] = h
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.restore = true
	defer func() { e.restore = false }()
	for _, r := range devs {
		e.devs[r.Name] = r
		d, err := e.pool.CreateMinor(r.Name, r.UUID, r.Minor)
		if err != nil {
			return fmt.Errorf("%w: stored device %s: %v", store.ErrCorrupt, r.Name, err)
		}
		d.SetReadOnly(r.ReadOnly)
	}
	for _, r := range dependencyOrder(devs) {
		d, _ := e.pool.Device(r.Name)
		if r.Active != nil {
			if err := e.loadStored(d, *r.Active, r.ActiveState); err != nil {
				e.broken[r.Name] = err
			} else if err := e.pool.Resume(d); err != nil {
				e.broken[r.Name] = err
			}
		}
		if r.Inactive != nil {
			if err := e.loadStored(d, *r.Inactive, r.InactiveState); err != nil && e.broken[r.Name] == nil {
				e.broken[r.Name] = fmt.Errorf("inactive table: %w", err)
			}
		}
		if r.Suspended {
			e.pool.Suspend(d)
		}
		d.SetEventNr(r.EventNr)
	}
	for ref, h := range e.holders {
		if !holderAlive(h) {
			continue
		}
		if _, err := e.pool.ClaimLeaf(ref, h.Holder); err != nil {
			continue // shown by `info`; a claim never blocks loading
		}
	}
	return nil
}

// loadStored builds a stored table for d, gives its targets their saved
// state and puts it in d's inactive slot. A state a target cannot read
// leaves the table out: the device is broken, never guessed.
func (e *Engine) loadStored(d *stack.Device, text string, states []store.TargetState) error {
	lines, err := stack.ParseText(text, "of device "+d.Name())
	if err != nil {
		if te, ok := err.(*stack.TableError); ok {
			te.Device = d.Name()
		}
		return err
	}
	t, err := e.pool.Build(d, lines)
	if err != nil {
		return err
	}
	if err := restoreStates(t, states); err != nil {
		t.Destroy()
		return err
	}
	return e.pool.LoadTable(d, t)
}

// dependencyOrder sorts device records so that a device comes after every
// mapped device its tables name (by name, /dev/mapper/NAME or 0:minor).
func dependencyOrder(devs []store.DeviceRecord) []store.DeviceRecord {
	byRef := map[string]string{}
	for _, r := range devs {
		byRef[r.Name] = r.Name
		byRef[stack.MapperDir+r.Name] = r.Name
		byRef[fmt.Sprintf("%d:%d", stack.MappedMajor, r.Minor)] = r.Name
	}
	deps := map[string][]string{}
	for _, r := range devs {
		for _, t := range []*string{r.Active, r.Inactive} {
			if t == nil {
				continue
			}
			lines, err := stack.ParseText(*t, "")
			if err != nil {
				continue
			}
			for _, l := range lines {
				for _, a := range stack.SplitArgs(l.Params) {
					if n, ok := byRef[a]; ok && n != r.Name {
						deps[r.Name] = append(deps[r.Name], n)
					}
				}
			}
		}
	}
	var out []store.DeviceRecord
	state := map[string]int{} // 1 visiting, 2 done
	byName := map[string]store.DeviceRecord{}
	for _, r := range devs {
		byName[r.Name] = r
	}
	var visit func(n string)
	visit = func(n string) {
		if state[n] != 0 {
			return
		}
		state[n] = 1
		for _, c := range deps[n] {
			visit(c)
		}
		state[n] = 2
		out = append(out, byName[n])
	}
	for _, r := range devs {
		visit(r.Name)
	}
	return out
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

// touchDevice notes that d's record must be rewritten.
func (e *Engine) touchDevice(d *stack.Device) { e.op.devices[d.Name()] = true }

// change notes a lifecycle change to tell watchers after the commit.
func (e *Engine) change(c DeviceChange) { e.op.changes = append(e.op.changes, c) }

// device finds a mapped device, as dmsetup does: by name, /dev/mapper/NAME
// or 0:minor.
func (e *Engine) device(name string) (*stack.Device, error) {
	return e.pool.Device(name)
}

// holderAlive reports whether the process that made a claim still runs:
// a claim dies with its process, as a kernel claim does when the holder
// closes the device.
func holderAlive(h store.HolderRecord) bool {
	if h.PID <= 0 {
		return true // claims made through the daemon on behalf of a name
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.PID))
	if err != nil {
		return false
	}
	started, ok := procStart(string(st))
	return !ok || !started.After(h.Since.Add(time.Second))
}

// locked runs fn under the engine lock, turning a panic (a bug) into
// ErrInternal.
func (e *Engine) locked(fn func() error) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrInternal, r)
		}
	}()
	if e.closed {
		return ErrClosed
	}
	return fn()
}

// run is a state-changing command: fn under the engine lock, in mutate.
func (e *Engine) run(fn func() error) error {
	return e.locked(func() error { return e.mutate(fn) })
}

// lockDevice takes d's lifecycle lock: one suspend, resume or remove (and
// the filesystem freeze around it) per device at a time. The engine lock
// is not held while waiting for it, so one device's slow command never
// stops another's.
func (e *Engine) lockDevice(ctx context.Context, d *stack.Device) (func(), error) {
	e.lcMu.Lock()
	ch := e.lc[d]
	if ch == nil {
		ch = make(chan struct{}, 1)
		e.lc[d] = ch
	}
	e.lcMu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ErrClosed: the engine was closed.
var ErrClosed = fmt.Errorf("%w: the engine is closed", syscall.EBADF)
