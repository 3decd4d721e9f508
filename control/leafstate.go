package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

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
			translate := func(kind rmapchain.Kind, delta extent.Set) {
				if inGraph {
					e.op.events = append(e.op.events, rmapchain.Translate(g, kind, dev, delta, now)...)
				}
			}
			switch {
			case present && (rec.Lost || back.Ref() != rec.Ref):
				// Back, or found at another number (then the leaf the pool
				// holds is a stand-in, or a descriptor of its old number,
				// which may hold another medium now: it is replaced).
				resp.Restored = append(resp.Restored, back.Ref())
				found, trunc, moved, wasLost := back, back.Truncated(), back.Ref() != rec.Ref, rec.Lost
				if r := e.leafRefByID(id); r != nil {
					e.givePoison(back)
					old := r.cur()
					r.l.Store(back)
					e.onUndo(func() { r.swap(old) })
					e.afterCommit(func() { old.Close() })
					back = nil
				}
				// Its events name it as it is now (swapped in first). A leaf
				// not recorded lost had no loss reported: nothing to restore.
				if wasLost {
					translate(rmapchain.Restored, e.wholeLeaf(rec).Subtract(trunc))
				} else if was := shrunkSet(rec); !trunc.Equal(was) {
					translate(rmapchain.MediaError, trunc.Subtract(was).Subtract(e.poison[id]))
					translate(rmapchain.Cleared, was.Subtract(trunc).Subtract(e.poison[id]))
				}
				rec.Lost, rec.LostSince, rec.Shrunk = false, now, trunc.Sectors()
				if moved {
					// Found at another number (a loop device re-attached):
					// the same leaf, under its recorded ID, named as it is now;
					// the tables that name it are stored again with its new
					// name.
					rec = e.movedRecord(rec, found)
					if inGraph {
						for _, d := range e.pool.Users(dev) {
							e.op.devices[d.Name()] = true
						}
					}
				}
				e.putLeafRecord(rec)
			case !present && !rec.Lost:
				resp.Lost = append(resp.Lost, rec.Ref)
				if cur != nil {
					cur.SetLost(true)
					e.onUndo(func() { cur.SetLost(false) })
				}
				// Sectors past a shrunk leaf's end were reported bad already.
				translate(rmapchain.Lost, e.wholeLeaf(rec).Subtract(shrunkSet(rec)))
				rec.Lost, rec.LostSince, rec.Shrunk = true, now, 0
				e.putLeafRecord(rec)
			case present && cur != nil && !cur.Lost():
				if dl, ok := cur.(*dax.Leaf); ok && e.recheckSize(&resp, rec, dl, translate) {
					rec = e.recs[id]
				}
				if cur.PoisonSource() != dax.SourceSysfs {
					break
				}
				old, now2 := e.poison[id], cur.BadBlocks()
				added, cleared := now2.Subtract(old), old.Subtract(now2)
				if added.Empty() && cleared.Empty() {
					break
				}
				resp.Changed = append(resp.Changed, rec.Ref)
				e.op.poison[id] = true
				translate(rmapchain.MediaError, added)
				translate(rmapchain.Cleared, cleared)
			}
			if back != nil {
				back.Close()
			}
		}
		return nil
	})
	return resp, err
}

// recheckSize looks at a present leaf's size again (dax.Leaf.Recheck) and
// compares the sectors past its end with those the record says were
// reported: sectors lost to a shrink are media errors of the leaf,
// translated up, exactly as a lost leaf's range is; sectors that came
// back (it grew again) are cleared. It reports whether it changed the
// record.
func (e *Engine) recheckSize(resp *RescanResp, rec store.LeafRecord, l *dax.Leaf, translate func(rmapchain.Kind, extent.Set)) bool {
	_, now, err := l.Recheck()
	if err != nil {
		return false // the probe saw it; what changed since is the next rescan's
	}
	was := shrunkSet(rec)
	if now.Sectors() == rec.Shrunk {
		return false
	}
	bad := e.poison[rec.ID]
	if shrank := now.Subtract(was).Subtract(bad); !shrank.Empty() {
		resp.Shrunk = append(resp.Shrunk, rec.Ref)
		translate(rmapchain.MediaError, shrank)
	}
	if grew := was.Subtract(now).Subtract(bad); !grew.Empty() {
		resp.Grown = append(resp.Grown, rec.Ref)
		translate(rmapchain.Cleared, grew)
	}
	rec.Shrunk = now.Sectors()
	e.putLeafRecord(rec)
	return true
}

// recheckSizes looks at the size of every leaf below d again, so that a
// report made by a long-lived engine (the daemon's) shows the sectors
// past the end of a leaf that shrank since its last I/O as bad, as a
// fresh engine would. The events are the next rescan's.
func (e *Engine) recheckSizes(d *stack.Dev) {
	for _, x := range e.pool.Graph().Descendants(d) {
		if l := e.localLeaf(x); l != nil && !l.Lost() {
			l.Recheck()
		}
	}
}

// shrunkSet returns the sectors a record says were past the leaf's end.
func shrunkSet(rec store.LeafRecord) extent.Set {
	if rec.Shrunk == 0 || rec.Shrunk > rec.Size {
		return extent.Set{}
	}
	return extent.Of(extent.Extent{Start: rec.Size - rec.Shrunk, Len: rec.Shrunk})
}

// movedRecord is rec for a leaf found at another device number: the same
// ID, size, poison and history, with its name, path and identity as now.
func (e *Engine) movedRecord(rec store.LeafRecord, l *dax.Leaf) store.LeafRecord {
	rec.Ref, rec.Path, rec.Name = l.Ref(), l.Path(), l.Name()
	if id, err := json.Marshal(l.Identity()); err == nil {
		rec.Identity = id
	}
	return rec
}

// probe returns a recorded leaf opened anew if it is present now: it
// opens, has media, and is the device that was recorded; else nil. A
// block device that is not at its recorded number any more is looked for
// among those present (dax.Opener.Find: a loop device re-attached at
// another number, by its backing file; a pmem namespace by its UUID).
// The leaf returned keeps the recorded ID and size (dax.Known).
func (e *Engine) probe(rec store.LeafRecord) *dax.Leaf {
	ref := rec.Ref
	if rec.Kind == "file" && rec.Path != "" {
		ref = rec.Path
	}
	var id dax.Identity
	if len(rec.Identity) > 0 && json.Unmarshal(rec.Identity, &id) != nil {
		return nil
	}
	k := dax.Known{Identity: id, Size: rec.Size, ID: rec.ID}
	if id.Kind == "" {
		k.ID = "" // nothing to tell another device from this one by
	}
	if l, err := e.opener.OpenKnown(ref, k); err == nil {
		// A block device without media (a detached loop device) is lost;
		// a file is there even when truncated to nothing (all of it past
		// its end).
		if l.ID() == rec.ID && (l.CurrentSize() > 0 || l.Kind() == dax.KindFile) && e.sameIdentity(rec, l) {
			return l
		}
		l.Close()
	}
	if id.Kind != dax.KindBlock && id.Kind != dax.KindPmem {
		return nil
	}
	node, err := e.opener.Find(id)
	if err != nil {
		return nil
	}
	l, err := e.opener.OpenKnown(node, k)
	if err != nil {
		return nil
	}
	if l.CurrentSize() == 0 || e.inUseElsewhere(rec.ID, l) {
		l.Close()
		return nil
	}
	return l
}

// inUseElsewhere reports whether the device l was found on is a leaf the
// pool already holds under another ID (a table typed since names it).
func (e *Engine) inUseElsewhere(id string, l *dax.Leaf) bool {
	for _, d := range e.pool.Leaves() {
		if x := e.daxLeaf(d); x != nil && x.ID() != id && !x.Lost() && x.Ref() == l.Ref() {
			return true
		}
	}
	return false
}

// openAsRecorded opens a leaf a table names. A leaf recorded under that
// name is opened as recorded (dax.OpenKnown): it keeps its recorded ID
// (a loop device that a rescan found at another number is still the leaf
// recorded under its first number) and, while stored tables are restored,
// its recorded size, so that a leaf that shrank under its tables has the
// sectors past its end bad (Truncated) instead of breaking the tables.
func (e *Engine) openAsRecorded(ref string, rec store.LeafRecord, hasRec bool) (*dax.Leaf, error) {
	if !hasRec {
		return e.openNew(ref)
	}
	var k dax.Known
	if len(rec.Identity) > 0 && json.Unmarshal(rec.Identity, &k.Identity) == nil && k.Identity.Kind != "" {
		k.ID = rec.ID
	} else {
		k.Identity = dax.Identity{}
	}
	l, err := e.opener.OpenKnown(ref, k)
	if errors.Is(err, dax.ErrChanged) && !e.restore {
		// A table typed now names the device there now.
		return e.openNew(ref)
	}
	if err == nil && e.restore && l.Size() < rec.Size {
		// Smaller than its tables were checked against: open it again at
		// its recorded size, the sectors past its end Truncated. (A leaf
		// that grew has its new size: new tables may use it.)
		l.Close()
		k.Size = rec.Size
		return e.opener.OpenKnown(ref, k)
	}
	return l, err
}

// openNew opens a leaf no record names. A block device at the number a
// recorded leaf had when it was first recorded, which has moved since (a
// loop device re-attached elsewhere keeps its first ID), is another leaf:
// it gets an ID of its own, made unique by its diskseq.
func (e *Engine) openNew(ref string) (*dax.Leaf, error) {
	l, err := e.opener.Open(ref)
	if err != nil {
		return nil, err
	}
	rec, taken := e.recs[l.ID()]
	if !taken || rec.Ref == l.Ref() {
		return l, nil
	}
	id := l.Identity()
	l.Close()
	if id.DiskSeq == 0 {
		return nil, fmt.Errorf("%w: %s is another device at the number leaf %s had, and has no diskseq to tell them apart", stack.ErrBusy, ref, rec.Ref)
	}
	return e.opener.OpenKnown(ref, dax.Known{ID: fmt.Sprintf("%s@%d", rec.ID, id.DiskSeq)})
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
// uevents about other devices. While a recorded loop device is lost, any
// loop device may be it (re-attached at another number), and while a
// pmem namespace with a UUID is, any pmem device.
func (e *Engine) KnownDevice(name string, major, minor uint32) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	devno := fmt.Sprintf("%d:%d", major, minor)
	for _, r := range e.recs {
		if r.Name == name || (major != 0 && r.Ref == devno) {
			return true
		}
		if !r.Lost || len(r.Identity) == 0 {
			continue
		}
		var id dax.Identity
		if json.Unmarshal(r.Identity, &id) != nil {
			continue
		}
		if (id.Loop && strings.HasPrefix(name, "loop")) || (id.UUID != "" && id.Kind == dax.KindPmem && strings.HasPrefix(name, "pmem")) {
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
