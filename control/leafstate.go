package control

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// Rescan compares every recorded leaf with what the system shows now and
// records the changes with their events: a leaf that is gone, has no
// media (a detached loop device) or is another device now is lost; a lost
// leaf that is back with the same identity is restored; a leaf whose sysfs
// badblocks list differs from the one last seen has media errors or
// cleared ones. The daemon calls it on uevents, after a netlink overrun,
// periodically, and at start.
//
// A leaf that is back takes the place of its stand-in under the same
// tables: nothing is rebuilt, and no I/O, open handle or target state is
// disturbed.
func (e *Engine) Rescan(ctx context.Context) (RescanResp, error) {
	var resp RescanResp
	err := e.command(ctx, func() error {
		var err error
		resp, err = e.rescan()
		return err
	})
	return resp, err
}

func (e *Engine) rescan() (RescanResp, error) {
	var resp RescanResp
	err := e.run(func() error {
		resp = RescanResp{}
		g := e.pool.Graph()
		now := e.cfg.Now()
		ids := make([]string, 0, len(e.recs))
		for id := range e.recs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			rec := e.recs[id]
			if rec.Kind == nbdleaf.Kind {
				continue // an NBD leaf reports its losses and returns itself (onNBDLost)
			}
			back := e.probe(rec)
			present := back != nil
			cur := e.daxLeafByID(id)
			dev, inGraph := e.pool.Leaf(id)
			switch {
			case present && rec.Lost:
				resp.Restored = append(resp.Restored, rec.Ref)
				if inGraph {
					e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Restored, dev, e.wholeLeaf(rec), now)...)
				}
				rec.Lost, rec.LostSince = false, now
				e.putLeafRecord(rec)
				if r := e.leafRefByID(id); r != nil {
					e.givePoison(back)
					old := r.cur()
					r.l.Store(back)
					back = nil
					e.onUndo(func() { r.swap(old) })
					e.afterCommit(func() { old.Close() })
				}
			case !present && !rec.Lost:
				resp.Lost = append(resp.Lost, rec.Ref)
				if cur != nil {
					cur.SetLost(true)
					e.onUndo(func() { cur.SetLost(false) })
				}
				if inGraph {
					e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Lost, dev, e.wholeLeaf(rec), now)...)
				}
				rec.Lost, rec.LostSince = true, now
				e.putLeafRecord(rec)
			case present && cur != nil && cur.PoisonSource() == "sysfs":
				old, now2 := e.poison[id], cur.BadBlocks()
				added, cleared := now2.Subtract(old), old.Subtract(now2)
				if added.Empty() && cleared.Empty() {
					continue
				}
				resp.Changed = append(resp.Changed, rec.Ref)
				e.op.poison[id] = true
				if inGraph {
					e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.MediaError, dev, added, now)...)
					e.op.events = append(e.op.events, rmapchain.Translate(g, rmapchain.Cleared, dev, cleared, now)...)
				}
			}
			if back != nil {
				back.Close()
			}
		}
		return nil
	})
	return resp, err
}

// probe returns a recorded leaf opened anew if it is present now: it
// opens, has media, and is the device that was recorded; else nil.
func (e *Engine) probe(rec store.LeafRecord) *dax.Leaf {
	ref := rec.Ref
	if rec.Kind == "file" && rec.Path != "" {
		ref = rec.Path
	}
	l, err := e.opener.Open(ref)
	if err != nil {
		return nil
	}
	if l.ID() == rec.ID && l.Size() > 0 && e.sameIdentity(rec, l) {
		return l
	}
	l.Close()
	return nil
}

// wholeLeaf returns the sectors a loss or a return changes: all of the
// leaf but its poison, which stays bad either way.
func (e *Engine) wholeLeaf(rec store.LeafRecord) extent.Set {
	all := extent.Of(extent.Extent{Start: 0, Len: rec.Size})
	return all.Subtract(e.poison[rec.ID])
}

// putLeafRecord makes the running command write rec as it is.
func (e *Engine) putLeafRecord(rec store.LeafRecord) {
	old, had := e.recs[rec.ID]
	e.recs[rec.ID] = rec
	e.onUndo(func() {
		if had {
			e.recs[rec.ID] = old
		} else {
			delete(e.recs, rec.ID)
		}
	})
	e.op.leafRecs[rec.ID] = rec
}

// BadblocksFiles returns the sysfs badblocks files of the leaves whose
// poison sysfs keeps, for the daemon to watch.
func (e *Engine) BadblocksFiles() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	root := e.cfg.SysfsRoot
	if root == "" {
		root = "/sys"
	}
	for _, d := range e.pool.Leaves() {
		if l := e.daxLeaf(d); l != nil && l.PoisonSource() == "sysfs" && l.Kind() == "pmem" {
			out[filepath.Join(root, "block", l.Name(), "badblocks")] = l.ID()
		}
	}
	return out
}

// KnownDevice reports whether a kernel device name (pmem0, loop3, dax0.0)
// or device number belongs to a recorded leaf, so the daemon can ignore
// uevents about other devices.
func (e *Engine) KnownDevice(name string, major, minor uint32) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	devno := fmt.Sprintf("%d:%d", major, minor)
	for _, r := range e.recs {
		if r.Name == name || (major != 0 && r.Ref == devno) {
			return true
		}
	}
	return false
}

// PreRemove logs a pre-remove event for every device above a leaf (the
// kernel's MF_MEM_PRE_REMOVE): holders should stop using the sectors the
// leaf backs, which are about to go.
func (e *Engine) PreRemove(_ context.Context, r NameReq) (PreRemoveResp, error) {
	return report(e, func() (PreRemoveResp, error) { return e.preRemove(r) })
}

func (e *Engine) preRemove(r NameReq) (PreRemoveResp, error) {
	var resp PreRemoveResp
	before, err := e.lastSeq()
	if err != nil {
		return resp, err
	}
	err = e.mutate(func() error {
		dev, rec, err := e.leafByRef(r.Name)
		if err != nil {
			return err
		}
		e.op.events = append(e.op.events, rmapchain.Translate(e.pool.Graph(), rmapchain.PreRemove, dev, e.wholeLeaf(rec), e.cfg.Now())...)
		return nil
	})
	if err != nil {
		return resp, err
	}
	// The method runs under the engine lock: every event after before is
	// this command's.
	err = e.db.View(func(tx *store.Tx) error {
		var err error
		if resp.Seq, err = tx.LastSeq(); err != nil {
			return err
		}
		return tx.Events(before, func(ev rmapchain.Event) error {
			if ev.Kind == rmapchain.PreRemove {
				resp.Events = append(resp.Events, ev)
			}
			return nil
		})
	})
	return resp, err
}

// Offline marks a leaf lost after an orderly removal: the lost events go
// up as they would on a surprise removal, and the daemon stops treating a
// later uevent about it as news.
func (e *Engine) Offline(_ context.Context, r NameReq) (SeqResp, error) {
	return report(e, func() (SeqResp, error) { return e.offline(r) })
}

func (e *Engine) offline(r NameReq) (SeqResp, error) {
	var resp SeqResp
	err := e.mutate(func() error {
		dev, rec, err := e.leafByRef(r.Name)
		if err != nil {
			return err
		}
		if rec.Lost {
			return nil
		}
		e.op.events = append(e.op.events, rmapchain.Translate(e.pool.Graph(), rmapchain.Lost, dev, e.wholeLeaf(rec), e.cfg.Now())...)
		if l := e.daxLeafByID(rec.ID); l != nil {
			l.SetLost(true)
			e.onUndo(func() { l.SetLost(false) })
		}
		rec.Lost, rec.LostSince = true, e.cfg.Now()
		e.putLeafRecord(rec)
		return nil
	})
	if err == nil {
		resp.Seq, err = e.lastSeq()
	}
	return resp, err
}

// leafByRef finds a leaf some table uses, with its record.
func (e *Engine) leafByRef(ref string) (*stack.Dev, store.LeafRecord, error) {
	dev, err := e.pool.Lookup(ref)
	if err != nil || dev.Leaf() == nil {
		return nil, store.LeafRecord{}, opErr("", ref, nil, fmt.Errorf("%w: %s is not a leaf any table uses", stack.ErrNotFound, ref))
	}
	rec, ok := e.recs[dev.Leaf().ID()]
	if !ok {
		if l := e.daxLeaf(dev); l != nil {
			rec = e.leafRecord(l, e.cfg.Now())
		}
	}
	return dev, rec, nil
}

func (e *Engine) lastSeq() (uint64, error) {
	var seq uint64
	err := e.db.View(func(tx *store.Tx) error {
		var err error
		seq, err = tx.LastSeq()
		return err
	})
	return seq, err
}
