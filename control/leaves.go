package control

import (
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// leafRef is how the pool holds a leaf (a dax leaf, or an NBD leaf: see
// engineLeaf). The pool owns it (it closes
// it when nothing refers to it, see stack's leaves.go); the engine keeps an
// index of them by ID (e.refs) and may replace the dax leaf behind it when
// a lost leaf comes back, without the pool, its tables or the I/O in
// flight noticing anything but the leaf working again.
type leafRef struct {
	e  *Engine
	id string
	l  leafSlot
}

func (r *leafRef) cur() engineLeaf                          { return r.l.Load() }
func (r *leafRef) ID() string                               { return r.id }
func (r *leafRef) Ref() string                              { return r.cur().Ref() }
func (r *leafRef) Name() string                             { return r.cur().Name() }
func (r *leafRef) Size() uint64                             { return r.cur().Size() }
func (r *leafRef) ReadAt(p []byte, off int64) (int, error)  { return r.cur().ReadAt(p, off) }
func (r *leafRef) WriteAt(p []byte, off int64) (int, error) { return r.cur().WriteAt(p, off) }
func (r *leafRef) BadBlocks() extent.Set                    { return r.cur().BadBlocks() }
func (r *leafRef) Lost() bool                               { return r.cur().Lost() }
func (r *leafRef) Truncated() extent.Set {
	if l, ok := r.cur().(*dax.Leaf); ok {
		return l.Truncated()
	}
	return extent.Set{} // an NBD leaf's size is the export's, checked at every connection
}
func (r *leafRef) Sync() error { return r.cur().Sync() }

// Close is the pool letting go of the leaf.
func (r *leafRef) Close() error {
	r.e.refMu.Lock()
	if r.e.refs[r.id] == r {
		delete(r.e.refs, r.id)
	}
	r.e.refMu.Unlock()
	return r.cur().Close()
}

// swap puts l behind r (a leaf that came back) and closes the one it
// replaces.
func (r *leafRef) swap(l engineLeaf) {
	if old := r.l.Swap(l); old != nil && old != l {
		old.Close()
	}
}

// openLeaf is the pool's leaf opener. While stored tables are being
// restored, a leaf that cannot be opened, has no media, or is not the
// device that was recorded stands in as a lost placeholder with its
// recorded size; for tables typed now, the device found is the leaf. A
// leaf the pool holds already is given again as it is. A command run for
// a peer opens only what the peer may (peerRef, see peer.go).
func (e *Engine) openLeaf(ref string) (stack.Leaf, error) {
	if err := e.refuseExport(ref); err != nil {
		return nil, err
	}
	if nbdleaf.IsRef(ref) {
		return e.openNBDLeaf(ref)
	}
	ref, bind, err := e.peerRef(ref)
	if err != nil {
		return nil, err
	}
	rec, hasRec := e.recordByRef(ref)
	l, err := e.openAsRecorded(ref, rec, hasRec)
	if err != nil {
		if hasRec && e.restore {
			return e.adopt(e.placeholder(rec)), nil
		}
		return nil, err
	}
	if bind != nil {
		if err := bind(l); err != nil {
			l.Close()
			return nil, err
		}
	}
	if r := e.leafRefByID(l.ID()); r != nil {
		l.Close()
		return r, nil
	}
	if e.restore {
		if r, ok := e.recs[l.ID()]; ok {
			rec, hasRec = r, true
		}
		if hasRec && (rec.ID != l.ID() || !e.sameIdentity(rec, l) || (l.CurrentSize() == 0 && rec.Size > 0 && l.Kind() != dax.KindFile)) {
			l.Close()
			return e.adopt(e.placeholder(rec)), nil
		}
		if hasRec && rec.Lost {
			// Recorded lost: only a rescan (the daemon's) says it is back,
			// with a "restored" event.
			l.SetLost(true)
		}
	}
	e.givePoison(l)
	e.noteLeaf(l)
	return e.adopt(l), nil
}

// givePoison gives a leaf whose poison the store keeps (emulated) its list.
func (e *Engine) givePoison(l engineLeaf) {
	if l.PoisonSource() == dax.SourceEmulated {
		if p, ok := e.poison[l.ID()]; ok {
			l.SetPoison(p)
		}
	}
}

// adopt indexes l as the leaf of its ID and returns its leafRef.
func (e *Engine) adopt(l engineLeaf) *leafRef {
	e.refMu.Lock()
	defer e.refMu.Unlock()
	if r := e.refs[l.ID()]; r != nil {
		if r.cur() != l {
			l.Close()
		}
		return r
	}
	r := &leafRef{e: e, id: l.ID()}
	r.l.Store(l)
	e.refs[l.ID()] = r
	return r
}

func (e *Engine) leafRefByID(id string) *leafRef {
	e.refMu.Lock()
	defer e.refMu.Unlock()
	return e.refs[id]
}

// daxLeafByID returns the leaf of the given ID the pool holds, or nil.
func (e *Engine) daxLeafByID(id string) engineLeaf {
	if r := e.leafRefByID(id); r != nil {
		return r.cur()
	}
	return nil
}

// localLeaf returns the leaf behind a pool leaf when it is a local one
// (a file or a device of this machine), nil for an NBD leaf.
func (e *Engine) localLeaf(d *stack.Dev) *dax.Leaf {
	l, _ := e.daxLeaf(d).(*dax.Leaf)
	return l
}

// daxLeaf returns the leaf (dax or NBD) behind a pool leaf.
func (e *Engine) daxLeaf(d *stack.Dev) engineLeaf {
	if d == nil || d.Leaf() == nil {
		return nil
	}
	if r, ok := d.Leaf().(*leafRef); ok {
		return r.cur()
	}
	return nil
}

func (e *Engine) recordByRef(ref string) (store.LeafRecord, bool) {
	for _, r := range e.recs {
		if r.Ref == ref || r.Path == ref {
			return r, true
		}
	}
	return store.LeafRecord{}, false
}

func (e *Engine) sameIdentity(rec store.LeafRecord, l engineLeaf) bool {
	if len(rec.Identity) == 0 {
		return true
	}
	return sameIdentity(rec.Identity, l)
}

// placeholder returns a lost stand-in for a recorded leaf.
func (e *Engine) placeholder(rec store.LeafRecord) engineLeaf {
	if l := e.daxLeafByID(rec.ID); l != nil {
		return l
	}
	l := dax.Missing(rec.ID, rec.Ref, rec.Name, rec.Kind, rec.Size)
	if p, ok := e.poison[rec.ID]; ok {
		l.SetPoison(p)
	}
	return l
}

// noteLeaf records a leaf the store does not know yet (or whose record is
// stale) so the running command writes it.
func (e *Engine) noteLeaf(l engineLeaf) {
	if e.op == nil {
		return
	}
	r, ok := e.recs[l.ID()]
	if ok && r.Ref == l.Ref() && r.Size == l.Size() && e.sameIdentity(r, l) && !r.Lost {
		return
	}
	e.op.leaves[l.ID()] = true
}

func (e *Engine) leafRecord(l engineLeaf, now time.Time) store.LeafRecord {
	r := e.recs[l.ID()]
	r.ID, r.Ref, r.Path, r.Name, r.Kind = l.ID(), l.Ref(), l.Path(), l.Name(), l.Kind()
	if sz := l.Size(); sz > 0 || r.Size == 0 {
		r.Size = sz
	}
	if id, err := identityJSON(l); err == nil && !l.Lost() {
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

// onPoison is called by dax leaves when their poison list changes (a write
// cleared sectors, an injection added some). I/O runs without the engine
// lock, so the leaf is queued and the next commit records its list as it
// is then, with the events of the difference from the list last committed.
func (e *Engine) onPoison(l *dax.Leaf, _, _ extent.Set) {
	e.pendMu.Lock()
	e.pendLeaves[l.ID()] = true
	e.pendMu.Unlock()
}

// onTargetChange is the pool's OnTargetChange: a target's state changed
// during I/O (stack.TargetInfo.StateChanged).
func (e *Engine) onTargetChange(c stack.TargetChange) {
	e.pendMu.Lock()
	e.pendTargets = append(e.pendTargets, c)
	e.pendMu.Unlock()
}

// pending reports whether I/O left changes to commit.
func (e *Engine) pending() bool {
	e.pendMu.Lock()
	defer e.pendMu.Unlock()
	return len(e.pendLeaves) > 0 || len(e.pendTargets) > 0
}

// takePending moves the changes I/O left into the running command: their
// records and their events.
func (e *Engine) takePending() {
	e.pendMu.Lock()
	leaves, targets := e.pendLeaves, e.pendTargets
	e.pendLeaves, e.pendTargets = map[string]bool{}, nil
	e.pendMu.Unlock()
	e.takeNBDLost()
	if len(leaves) == 0 && len(targets) == 0 {
		return
	}
	g := e.pool.Graph()
	now := e.cfg.Now()
	for id := range leaves {
		e.op.takenLeaves = append(e.op.takenLeaves, id)
		l := e.daxLeafByID(id)
		if l == nil {
			continue
		}
		cur, old := l.BadBlocks(), e.poison[id]
		added, cleared := cur.Subtract(old), old.Subtract(cur)
		if added.Empty() && cleared.Empty() {
			continue
		}
		e.op.poison[id] = true
		if dev, ok := e.pool.Leaf(id); ok {
			e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.MediaError, dev, added, now)...)
			e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Cleared, dev, cleared, now)...)
		}
	}
	for _, c := range targets {
		e.op.takenTargets = append(e.op.takenTargets, c)
		e.targetChanged(g, c, now)
	}
}
