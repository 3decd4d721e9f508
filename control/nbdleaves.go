package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// NBD leaves: a table may name an export (nbd://HOST[:PORT]/EXPORT,
// nbd+unix:///EXPORT?socket=PATH, nbds:// for TLS) wherever it may name a
// leaf path. The engine holds such a leaf as it holds a dax leaf (a
// leafRef, see engineLeaf) and records it with its identity (the canonical
// URI, the export's size and description). A recorded leaf is made again
// without dialling (nbdleaf.Opener.Lazy), so that ls, table and info never
// wait on a server; only the daemon watches it (keeps connections up,
// polls a daxstack server's bad ranges, hears of losses), an embedded
// command dials only when it does I/O. Poison changes and losses the leaf
// reports become records and events as a local leaf's do.

// NBDConfig is what every NBD leaf of an engine shares (nbdleaf.Opener).
type NBDConfig struct {
	TLS   *tls.Config   // for nbds:// (nbdleaf.ClientTLS); nil refuses nbds://
	Poll  time.Duration // daxstack:badblocks polling period (0: nbdleaf.DefaultPoll)
	Grace time.Duration // without a connection this long a leaf is lost (0: nbdleaf.DefaultGrace)
	Conns int           // connections per leaf (0: nbdleaf.DefaultConns)
}

// engineLeaf is what the engine asks of a leaf it holds: *dax.Leaf and
// *nbdleaf.Leaf both are one. Identities differ by kind and are read
// through identityJSON and sameIdentity.
type engineLeaf interface {
	stack.Leaf
	Path() string
	Kind() string
	Sync() error
	Close() error
	BadBlocks() extent.Set
	Lost() bool
	SetLost(bool)
	PoisonSource() string
	SetPoison(extent.Set)
	Inject(extent.Set) error
	Clear(extent.Set) error
}

var (
	_ engineLeaf = (*dax.Leaf)(nil)
	_ engineLeaf = (*nbdleaf.Leaf)(nil)
)

// leafSlot holds the leaf behind a leafRef, swapped atomically when a lost
// leaf comes back.
type leafSlot struct{ p atomic.Pointer[leafBox] }

type leafBox struct{ l engineLeaf }

func (s *leafSlot) Load() engineLeaf {
	if b := s.p.Load(); b != nil {
		return b.l
	}
	return nil
}

func (s *leafSlot) Store(l engineLeaf) { s.p.Store(&leafBox{l}) }

func (s *leafSlot) Swap(l engineLeaf) engineLeaf {
	if b := s.p.Swap(&leafBox{l}); b != nil {
		return b.l
	}
	return nil
}

// WriteZeroesAt implements stack.LeafZeroer: an NBD leaf whose server
// offers NBD_CMD_WRITE_ZEROES is sent it; any other leaf is written zeroes,
// as the I/O path would without this method.
func (r *leafRef) WriteZeroesAt(off, n int64) (int64, error) {
	if l, ok := r.cur().(*nbdleaf.Leaf); ok {
		err := l.WriteZeroes(off, n)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, nbdleaf.ErrUnsupported) {
			return 0, err
		}
	}
	done := int64(0)
	for done < n {
		k := min(n-done, int64(len(zeroes)))
		m, err := r.WriteAt(zeroes[:k], off+done)
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// zeroes is what WriteZeroesAt writes from; nothing writes into it.
var zeroes = make([]byte, 64<<10)

// DiscardAt implements stack.LeafDiscarder: an NBD leaf whose server
// offers NBD_CMD_TRIM is sent it; for any other leaf a discard is the
// hint it is without this method, and does nothing.
func (r *leafRef) DiscardAt(off, n int64) error {
	if l, ok := r.cur().(*nbdleaf.Leaf); ok {
		if err := l.Discard(off, n); err != nil && !errors.Is(err, nbdleaf.ErrUnsupported) {
			return err
		}
	}
	return nil
}

// identityJSON is a leaf's identity as the store keeps it.
func identityJSON(l engineLeaf) ([]byte, error) {
	switch l := l.(type) {
	case *dax.Leaf:
		return json.Marshal(l.Identity())
	case *nbdleaf.Leaf:
		return json.Marshal(l.Identity())
	}
	return nil, fmt.Errorf("%w: leaf %s of unknown type %T", ErrInternal, l.Ref(), l)
}

// sameIdentity reports whether leaf l is the one a stored identity names.
func sameIdentity(stored []byte, l engineLeaf) bool {
	switch l := l.(type) {
	case *dax.Leaf:
		var id dax.Identity
		if err := json.Unmarshal(stored, &id); err != nil {
			return false
		}
		return id.Same(l.Identity())
	case *nbdleaf.Leaf:
		id, err := nbdleaf.ParseIdentity(stored)
		return err == nil && id.Same(l.Identity())
	}
	return false
}

// nbdState is the engine's part for NBD leaves.
type nbdState struct {
	opener *nbdleaf.Opener

	mu   sync.Mutex
	lost map[string]bool // losses (true) and returns (false) not yet committed, by leaf ID

	kicked atomic.Bool // a background commit is on its way (kickNBD)
}

// initNBD makes the engine's NBD opener.
func (e *Engine) initNBD() {
	c := e.cfg.NBD
	e.nbd.lost = map[string]bool{}
	e.nbd.opener = &nbdleaf.Opener{TLSConfig: c.TLS, Poll: c.Poll, Grace: c.Grace, Conns: c.Conns,
		OnPoison: e.onNBDPoison, OnLost: e.onNBDLost}
}

// openNBDLeaf is openLeaf for an NBD reference. While stored tables are
// restored, the leaf is made from its record without dialling (and is a
// lost placeholder if the record cannot be read); a table typed now dials
// the export for its size, after the access check for the peer the
// command runs for (nbdleaf.CheckAccess), and dials as that peer from then
// on. A command run for no peer is this process's own: no check.
func (e *Engine) openNBDLeaf(ref string) (stack.Leaf, error) {
	canon, err := nbdleaf.Canonical(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", stack.ErrInvalid, err)
	}
	id := nbdleaf.IDPrefix + canon
	var as *nbdleaf.Cred
	if a := e.actor; a != nil && a.Cred.UID != 0 {
		if err := nbdleaf.CheckAccess(canon, a.Cred); err != nil {
			return nil, err
		}
		c := a.Cred
		as = &c
	}
	if r := e.leafRefByID(id); r != nil {
		return r, nil
	}
	rec, hasRec := e.recs[id]
	if e.restore {
		if !hasRec {
			return nil, fmt.Errorf("%w: NBD leaf %s has no record", store.ErrCorrupt, canon)
		}
		l, err := e.lazyNBD(rec)
		if err != nil {
			return e.adopt(e.placeholder(rec)), nil
		}
		return e.adopt(l), nil
	}
	l, err := e.nbd.opener.Open(context.Background(), canon, as)
	if err != nil {
		return nil, err
	}
	e.givePoison(l)
	e.noteLeaf(l)
	if e.cfg.Daemon {
		l.Watch()
	}
	return e.adopt(l), nil
}

// lazyNBD makes the leaf of a record without dialling, with its saved
// poison and, if it was recorded lost, lost until its export answers.
func (e *Engine) lazyNBD(rec store.LeafRecord) (*nbdleaf.Leaf, error) {
	ident, err := nbdleaf.ParseIdentity(rec.Identity)
	if err != nil {
		return nil, err
	}
	l, err := e.nbd.opener.Lazy(ident, nil)
	if err != nil {
		return nil, err
	}
	if p, ok := e.poison[rec.ID]; ok {
		l.SetPoison(p) // the last list known; a daxstack server's next poll corrects it
	}
	if rec.Lost {
		l.AssumeLost()
	}
	if e.cfg.Daemon {
		l.Watch()
	}
	return l, nil
}

// onNBDPoison hears a change of an NBD leaf's poison list: from I/O (the
// handle commits after it) or from a poll of a daxstack server, which
// nothing else commits.
func (e *Engine) onNBDPoison(l *nbdleaf.Leaf, _, _ extent.Set) {
	e.pendMu.Lock()
	e.pendLeaves[l.ID()] = true
	e.pendMu.Unlock()
	e.kickNBD()
}

// onNBDLost hears an NBD leaf become lost or come back. Only the daemon
// records it (as only the daemon records local leaves' losses).
func (e *Engine) onNBDLost(l *nbdleaf.Leaf, lost bool, _ error) {
	if !e.cfg.Daemon {
		return
	}
	e.nbd.mu.Lock()
	e.nbd.lost[l.ID()] = lost
	e.nbd.mu.Unlock()
	e.kickNBD()
}

// kickNBD commits what a leaf's goroutine queued, in the background: the
// callbacks are called without any lock of the engine held, and may be
// called from I/O that a command waits on. One commit at a time is on its
// way; what is queued after it starts looking gets one of its own.
func (e *Engine) kickNBD() {
	if !e.nbd.kicked.CompareAndSwap(false, true) {
		return
	}
	go func() {
		e.nbd.kicked.Store(false)
		e.nbd.mu.Lock()
		lost := len(e.nbd.lost) > 0
		e.nbd.mu.Unlock()
		if !lost && !e.pending() {
			return
		}
		e.locked(func() error { return e.mutate(func() error { return nil }) })
	}()
}

// takeNBDLost moves the queued losses and returns of NBD leaves into the
// running command: their records, and Lost or Restored events over the
// whole leaf but its poison, as a rescan makes for a local leaf.
func (e *Engine) takeNBDLost() {
	e.nbd.mu.Lock()
	queued := e.nbd.lost
	e.nbd.lost = map[string]bool{}
	e.nbd.mu.Unlock()
	if len(queued) == 0 {
		return
	}
	e.onUndo(func() {
		e.nbd.mu.Lock()
		defer e.nbd.mu.Unlock()
		for id, v := range queued {
			if _, newer := e.nbd.lost[id]; !newer {
				e.nbd.lost[id] = v
			}
		}
	})
	g := e.pool.Graph()
	now := e.cfg.Now()
	ids := make([]string, 0, len(queued))
	for id := range queued {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		lost := queued[id]
		rec, ok := e.recs[id]
		l := e.daxLeafByID(id)
		if !ok || rec.Lost == lost || l == nil || l.Lost() != lost {
			continue // nothing to record, or it changed again since (queued anew)
		}
		kind := rmapchain.Restored
		if lost {
			kind = rmapchain.Lost
		}
		if dev, inGraph := e.pool.Leaf(id); inGraph {
			e.op.events = append(e.op.events, rmapchain.Translate(g, kind, dev, e.wholeLeaf(rec), now)...)
		}
		rec.Lost, rec.LostSince = lost, now
		e.putLeafRecord(rec)
	}
}

// nbdReport is the leaves report's row of an NBD leaf: its URI stands for
// the path, its access is "nbd", and its poison is what the server's
// failures and bad ranges made it.
func nbdReport(l *nbdleaf.Leaf) dax.Report {
	r := dax.Report{
		Path: l.Ref(), Ref: l.Ref(), Name: l.Name(), ID: l.ID(), Kind: l.Kind(),
		Size: l.Size(), CurrentSize: l.Size(), Access: "nbd", Lost: l.Lost(),
		Poison: l.BadBlocks().Sectors(), PoisonSource: l.PoisonSource(),
	}
	if l.Lost() {
		r.Access = "none"
		if err := l.LostReason(); err != nil {
			r.Error = err.Error()
		}
	}
	return r
}
