package control

import (
	"context"
	"fmt"
	"os"
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
	// NoHold makes the daemon check block-device leaves when it opens
	// them without holding them (see claimMode): for tests of a surprise
	// removal, which a held loop device cannot have (losetup -d waits for
	// its last opener, as under device-mapper).
	NoHold bool
	// Clock and Rand, when set, are what targets read the time and
	// chance from (stack.TargetInfo); tests make them repeatable.
	Clock stack.Clock
	Seed  *uint64
	// NBD is what NBD leaves share (see nbdleaves.go).
	NBD NBDConfig
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
	actor   *actor                        // who the command running now runs for (peer.go)
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

	nbd nbdState // NBD leaves (nbdleaves.go)
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
	e.opener = &dax.Opener{SysfsRoot: cfg.SysfsRoot, DevRoot: cfg.DevRoot, OnPoison: e.onPoison, Claim: claimMode(cfg)}
	e.pool = stack.NewPool(e.openLeaf)
	e.pool.SetNoWait(!cfg.Daemon)
	e.pool.SetTargetEnv(cfg.Clock, seeded(cfg.Seed))
	e.pool.OnTargetChange(e.onTargetChange)
	e.initNBD()
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
