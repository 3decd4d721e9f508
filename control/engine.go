package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
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
	// leaf loss and return, which embedded commands only display.
	Daemon bool
}

// Engine runs daxstack commands against one database. It is safe for
// concurrent use; commands run one at a time.
type Engine struct {
	cfg    Config
	db     *store.DB
	opener *dax.Opener

	mu      sync.Mutex
	pool    *stack.Pool
	leaves  map[string]*dax.Leaf          // every leaf opened or standing in, by ID
	recs    map[string]store.LeafRecord   // stored leaf records, by ID
	poison  map[string]extent.Set         // stored poison lists, by leaf ID
	devs    map[string]store.DeviceRecord // stored device records, by name
	broken  map[string]error              // devices whose stored table failed to load
	holders map[string]store.HolderRecord // by device reference
	restore bool                          // loading stored tables (see openLeaf)
	op      *opState                      // the command running now

	pendMu  sync.Mutex
	pending []poisonChange // poison changes reported by leaves, not yet committed

	listeners []func([]rmapchain.Event)
}

// poisonChange is a change of a leaf's poison list reported by dax (a
// write cleared sectors, an injection added some), waiting for a commit.
type poisonChange struct {
	id             string
	added, cleared extent.Set
}

// opState collects what a running command changed.
type opState struct {
	devices map[string]bool // device names whose records must be rewritten
	deleted map[string]bool // device names removed
	leaves  map[string]bool // leaf IDs whose records must be rewritten from their leaf
	// leafRecs are leaf records decided explicitly (a rescan's lost or
	// restored), written as they are.
	leafRecs map[string]store.LeafRecord
	poison   map[string]bool // leaf IDs whose poison list must be rewritten
	events   []rmapchain.Event
	holders  map[string]*store.HolderRecord // nil value: delete
	touched  bool                           // the pool was changed
}

func newOpState() *opState {
	return &opState{
		devices: map[string]bool{}, deleted: map[string]bool{}, leaves: map[string]bool{}, leafRecs: map[string]store.LeafRecord{},
		poison: map[string]bool{}, holders: map[string]*store.HolderRecord{},
	}
}

// Open opens the database (creating it unless read-only) and rebuilds the
// device graph from it.
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
	e := &Engine{cfg: cfg, db: db}
	e.opener = &dax.Opener{SysfsRoot: cfg.SysfsRoot, DevRoot: cfg.DevRoot, OnPoison: e.onPoison}
	if err := e.load(); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

// Close releases the leaves and the database.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closeLeaves()
	return e.db.Close()
}

// DB returns the engine's store (the daemon reads the event log from it).
func (e *Engine) DB() *store.DB { return e.db }

// Listen registers fn to be called, after each commit, with the events the
// commit appended (with their sequence numbers).
func (e *Engine) Listen(fn func([]rmapchain.Event)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.listeners = append(e.listeners, fn)
}

func (e *Engine) closeLeaves() {
	for _, l := range e.leaves {
		l.Close()
	}
	e.leaves = nil
}

// pruneLeaves closes the leaves the pool no longer uses.
func (e *Engine) pruneLeaves() {
	used := map[string]bool{}
	for _, d := range e.pool.Leaves() {
		used[d.Leaf().ID()] = true
	}
	for id, l := range e.leaves {
		if !used[id] {
			l.Close()
			delete(e.leaves, id)
		}
	}
}

// load rebuilds the pool from the store.
func (e *Engine) load() error {
	if e.leaves == nil {
		e.leaves = map[string]*dax.Leaf{}
	}
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
	e.pool = stack.NewPool(e.openLeaf)
	e.restore = true
	defer func() { e.restore = false }()
	for _, r := range devs {
		e.devs[r.Name] = r
		if _, err := e.pool.CreateMinor(r.Name, r.UUID, r.Minor); err != nil {
			return fmt.Errorf("%w: stored device %s: %v", store.ErrCorrupt, r.Name, err)
		}
	}
	for _, r := range dependencyOrder(devs) {
		d, _ := e.pool.Device(r.Name)
		if r.Active != nil {
			if err := e.pool.LoadText(d, *r.Active, "of device "+r.Name); err != nil {
				e.broken[r.Name] = err
			} else if err := e.pool.Resume(d); err != nil {
				e.broken[r.Name] = err
			}
		}
		if r.Inactive != nil {
			if err := e.pool.LoadText(d, *r.Inactive, "of device "+r.Name); err != nil && e.broken[r.Name] == nil {
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
	e.pruneLeaves()
	return nil
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

// openLeaf is the pool's leaf opener. While stored tables are being
// restored, a leaf that cannot be opened, has no media, or is not the
// device that was recorded stands in as a lost placeholder with its
// recorded size; for tables typed now, the device found is the leaf.
// Leaves stay open across rebuilds of the pool: the engine, not the pool,
// closes them.
func (e *Engine) openLeaf(ref string) (stack.Leaf, error) {
	rec, hasRec := e.recordByRef(ref)
	l, err := e.opener.Open(ref)
	if err != nil {
		if hasRec && e.restore {
			return leafRef{e.placeholder(rec)}, nil
		}
		return nil, err
	}
	if old, ok := e.leaves[l.ID()]; ok && !old.Lost() {
		l.Close()
		return leafRef{old}, nil
	}
	if e.restore {
		if r, ok := e.recs[l.ID()]; ok {
			rec, hasRec = r, true
		}
		if hasRec && (rec.ID != l.ID() || !e.sameIdentity(rec, l) || (l.Size() == 0 && rec.Size > 0)) {
			l.Close()
			return leafRef{e.placeholder(rec)}, nil
		}
		if hasRec && rec.Lost {
			// Recorded lost: only a rescan (the daemon's) says it is back,
			// with a "restored" event.
			l.SetLost(true)
		}
	}
	if l.PoisonSource() == "emulated" {
		if p, ok := e.poison[l.ID()]; ok {
			l.SetPoison(p)
		}
	}
	if old, ok := e.leaves[l.ID()]; ok {
		old.Close()
	}
	e.leaves[l.ID()] = l
	e.noteLeaf(l)
	return leafRef{l}, nil
}

// leafRef is how the pool sees a dax leaf: everything but Close, so that
// the pool never closes a leaf the engine still holds.
type leafRef struct{ l *dax.Leaf }

func (r leafRef) ID() string                               { return r.l.ID() }
func (r leafRef) Ref() string                              { return r.l.Ref() }
func (r leafRef) Name() string                             { return r.l.Name() }
func (r leafRef) Size() uint64                             { return r.l.Size() }
func (r leafRef) ReadAt(p []byte, off int64) (int, error)  { return r.l.ReadAt(p, off) }
func (r leafRef) WriteAt(p []byte, off int64) (int, error) { return r.l.WriteAt(p, off) }
func (r leafRef) BadBlocks() extent.Set                    { return r.l.BadBlocks() }
func (r leafRef) Lost() bool                               { return r.l.Lost() }

// daxLeaf returns the dax leaf behind a pool leaf.
func (e *Engine) daxLeaf(d *stack.Dev) *dax.Leaf {
	if d == nil || d.Leaf() == nil {
		return nil
	}
	return e.leaves[d.Leaf().ID()]
}

func (e *Engine) recordByRef(ref string) (store.LeafRecord, bool) {
	for _, r := range e.recs {
		if r.Ref == ref || r.Path == ref {
			return r, true
		}
	}
	return store.LeafRecord{}, false
}

func (e *Engine) sameIdentity(rec store.LeafRecord, l *dax.Leaf) bool {
	if len(rec.Identity) == 0 {
		return true
	}
	var id dax.Identity
	if err := json.Unmarshal(rec.Identity, &id); err != nil {
		return false
	}
	return id.Same(l.Identity())
}

func (e *Engine) placeholder(rec store.LeafRecord) *dax.Leaf {
	if l, ok := e.leaves[rec.ID]; ok && l.Lost() {
		return l
	} else if ok {
		l.Close()
	}
	l := dax.Missing(rec.ID, rec.Ref, rec.Name, rec.Kind, rec.Size)
	if p, ok := e.poison[rec.ID]; ok {
		l.SetPoison(p)
	}
	e.leaves[rec.ID] = l
	return l
}

// noteLeaf records a leaf the store does not know yet (or whose record is
// stale) so the running command writes it.
func (e *Engine) noteLeaf(l *dax.Leaf) {
	if e.op == nil {
		return
	}
	r, ok := e.recs[l.ID()]
	if ok && r.Ref == l.Ref() && r.Size == l.Size() && e.sameIdentity(r, l) && !r.Lost {
		return
	}
	e.op.leaves[l.ID()] = true
}

// onPoison is called by dax leaves when their poison list changes (a write
// cleared sectors, an injection added some). I/O runs without the engine
// lock, so changes queue here and the next commit records them, with
// their events.
func (e *Engine) onPoison(l *dax.Leaf, added, cleared extent.Set) {
	e.pendMu.Lock()
	e.pending = append(e.pending, poisonChange{id: l.ID(), added: added, cleared: cleared})
	e.pendMu.Unlock()
}

// takePending moves queued poison changes into the running command.
func (e *Engine) takePending() {
	e.pendMu.Lock()
	pend := e.pending
	e.pending = nil
	e.pendMu.Unlock()
	if len(pend) == 0 {
		return
	}
	g := e.pool.Graph()
	now := e.cfg.Now()
	for _, c := range pend {
		e.op.poison[c.id] = true
		dev, ok := e.pool.Leaf(c.id)
		if !ok {
			continue // a leaf no table uses: nothing above it to tell
		}
		e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.MediaError, dev, c.added, now)...)
		e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Cleared, dev, c.cleared, now)...)
	}
}

// mutate runs one state-changing command: fn changes the pool and notes
// what it changed in e.op; then every noted record and event is written in
// one transaction. On any failure nothing is written and the pool is
// rebuilt from the store.
func (e *Engine) mutate(fn func() error) error {
	if e.cfg.ReadOnly {
		return ErrReadOnly
	}
	e.op = newOpState()
	defer func() { e.op = nil }()
	err := fn()
	var committed []rmapchain.Event
	if err == nil {
		e.takePending()
		committed, err = e.commit()
	}
	if err != nil {
		if e.op.touched || len(e.op.poison) > 0 {
			if lerr := e.load(); lerr != nil {
				return errors.Join(err, fmt.Errorf("rebuilding state from the store: %w", lerr))
			}
		}
		return err
	}
	e.pruneLeaves()
	if len(committed) > 0 {
		for _, fn := range e.listeners {
			fn(committed)
		}
	}
	return nil
}

// commit writes what the running command changed.
func (e *Engine) commit() ([]rmapchain.Event, error) {
	op := e.op
	now := e.cfg.Now()
	var devRecs []store.DeviceRecord
	for name := range op.devices {
		if op.deleted[name] {
			continue
		}
		d, err := e.pool.Device(name)
		if err != nil {
			continue
		}
		devRecs = append(devRecs, e.deviceRecord(d, now))
	}
	var leafRecs []store.LeafRecord
	for id := range op.leaves {
		if _, explicit := op.leafRecs[id]; explicit {
			continue
		}
		if l, ok := e.leaves[id]; ok {
			leafRecs = append(leafRecs, e.leafRecord(l, now))
		}
	}
	for _, r := range op.leafRecs {
		leafRecs = append(leafRecs, r)
	}
	for _, ev := range op.events {
		if d, err := e.pool.Device(ev.Device); err == nil {
			d.Event()
			if !op.deleted[d.Name()] {
				if _, noted := op.devices[d.Name()]; !noted {
					op.devices[d.Name()] = true
					devRecs = append(devRecs, e.deviceRecord(d, now))
				}
			}
		}
	}
	// Event numbers moved after the records were built; rebuild them.
	for i := range devRecs {
		if d, err := e.pool.Device(devRecs[i].Name); err == nil {
			devRecs[i].EventNr = d.EventNr()
		}
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
		for id := range op.poison {
			if l, ok := e.leaves[id]; ok {
				if err := tx.SetPoison(id, l.BadBlocks()); err != nil {
					return err
				}
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
	// The store now matches the pool: refresh the cached records.
	for name := range op.deleted {
		delete(e.devs, name)
	}
	for _, r := range devRecs {
		e.devs[r.Name] = r
	}
	for _, r := range leafRecs {
		e.recs[r.ID] = r
	}
	for id := range op.poison {
		if l, ok := e.leaves[id]; ok {
			e.poison[id] = l.BadBlocks()
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

// deviceRecord builds the stored record of d from the pool, keeping the
// fields the pool does not hold from the previous record.
func (e *Engine) deviceRecord(d *stack.Device, now time.Time) store.DeviceRecord {
	r, ok := e.devs[d.Name()]
	if !ok {
		r = store.DeviceRecord{Created: now}
	}
	r.Name, r.UUID, r.Minor = d.Name(), d.UUID(), d.Minor()
	if _, broken := e.broken[d.Name()]; !broken {
		r.Active = tableText(d.Active())
		r.Inactive = tableText(d.Inactive())
	}
	r.Suspended = d.Suspended()
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

func (e *Engine) leafRecord(l *dax.Leaf, now time.Time) store.LeafRecord {
	r := e.recs[l.ID()]
	r.ID, r.Ref, r.Path, r.Name, r.Kind = l.ID(), l.Ref(), l.Path(), l.Name(), l.Kind()
	if sz := l.Size(); sz > 0 || r.Size == 0 {
		r.Size = sz
	}
	if id, err := json.Marshal(l.Identity()); err == nil && !l.Lost() {
		r.Identity = id
	}
	if l.Lost() != r.Lost {
		r.Lost = l.Lost()
		r.LostSince = time.Time{}
		if r.Lost {
			r.LostSince = now
		}
	}
	return r
}

// touchDevice notes that d's record must be rewritten.
func (e *Engine) touchDevice(d *stack.Device) {
	e.op.devices[d.Name()] = true
	e.op.touched = true
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
