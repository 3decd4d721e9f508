package nbdleaf

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
)

// Leaf is an NBD export used as a leaf (see the package documentation).
// Make one with Opener.Open or Opener.Lazy. It implements stack.Leaf and
// the optional BadBlocks and Lost methods the reverse map uses.
type Leaf struct {
	// Read on every I/O.
	closed   atomic.Bool
	lost     atomic.Bool
	live     atomic.Pointer[[]*conn] // the connections in use; nil or empty: none
	rr       atomic.Uint32
	poison   atomic.Pointer[extent.Set] // nil: none
	inflight atomic.Int64
	size     uint64 // sectors
	bytes    int64  // size * SectorSize

	s        settings
	ref      string // canonical URI
	name     string
	ident    Identity
	as       *Cred
	tls      bool
	network  string
	address  string
	export   string
	ctx      context.Context // ends at Close
	cancel   context.CancelFunc
	unflush  atomic.Bool  // a connection with unflushed writes broke
	remote   atomic.Bool  // the server keeps the poison list (daxstack:badblocks)
	rmw      sync.RWMutex // read-modify-write of partial blocks excludes other writes
	routines sync.WaitGroup

	mu        sync.Mutex // the connection state below
	sess      *session   // the running session; nil: none
	changed   chan struct{}
	held      bool // SetLost(true)
	reason    error
	lostSince time.Time
	lastErr   error
	downSince time.Time // when the last connection went (or the session began without one)
	grace     *time.Timer

	pmu  sync.Mutex // serialises changes of the poison list
	pgen uint64     // counts changes made by I/O, so a poll can tell it raced one
}

// conn is one connection of a leaf.
type conn struct {
	c     *nbd.Client
	raw   net.Conn // under c: closing it ends c at once
	info  nbd.Info
	bad   bool         // the daxstack:badblocks context is selected
	dirty atomic.Bool  // writes completed since its last flush
	busy  atomic.Int64 // requests in flight
	since atomic.Int64 // clock() of the last reply, or of a request sent while none was in flight
}

// begin and end bracket a request on cn, for the watchdog.
func (cn *conn) begin() {
	if cn.busy.Load() == 0 {
		cn.since.Store(clock())
	}
	cn.busy.Add(1)
}

func (cn *conn) end() {
	cn.since.Store(clock())
	cn.busy.Add(-1)
}

// stuck reports whether cn has had requests in flight and no reply for
// longer than d.
func (cn *conn) stuck(d time.Duration) bool {
	return cn.busy.Load() > 0 && clock()-cn.since.Load() > int64(d)
}

var epoch = time.Now()

// clock is a monotonic clock in nanoseconds.
func clock() int64 { return int64(time.Since(epoch)) }

// session is the supervision of a leaf's connections from the first
// dial until SetLost(true) or Close: the goroutines that keep its
// connections up and the poller.
type session struct {
	ctx    context.Context
	cancel context.CancelFunc
	extras int  // extra slots running (beyond the first)
	poll   bool // the poller was started
}

func (o *Opener) newLeaf(id Identity, as *Cred) *Leaf {
	u, _ := parse(id.URI) // the caller parsed it
	l := &Leaf{s: o.settings(), ref: u.String(), name: u.String(), tls: u.TLS, network: u.Network,
		address: u.Address, export: u.Export, changed: make(chan struct{})}
	if as != nil {
		c := *as
		c.Groups = append([]uint32(nil), as.Groups...)
		l.as = &c
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.setIdentity(id)
	return l
}

func (l *Leaf) setIdentity(id Identity) {
	l.ident = id
	l.size = uint64(max(id.Size, 0)) / SectorSize
	l.bytes = int64(l.size) * SectorSize
}

// ID returns the leaf's stable identity: "nbd:" and the canonical URI.
func (l *Leaf) ID() string { return IDPrefix + l.ref }

// Ref returns how a table names the leaf: the canonical URI.
func (l *Leaf) Ref() string { return l.ref }

// Name returns the name used in messages: the canonical URI.
func (l *Leaf) Name() string { return l.name }

// Kind returns "nbd".
func (l *Leaf) Kind() string { return Kind }

// Path returns the canonical URI (as dax leaves return their path).
func (l *Leaf) Path() string { return l.ref }

// Size returns the leaf's size in 512-byte sectors: the export's size
// rounded down (the recorded size for a leaf from Lazy). A lost leaf
// keeps reporting it.
func (l *Leaf) Size() uint64 { return l.size }

// Identity returns what says whether an export that answers later is the
// same one (see Identity.Same).
func (l *Leaf) Identity() Identity { return l.ident }

// Lost reports whether the leaf is lost: no connection for longer than
// the grace period, another export behind its address, or SetLost.
func (l *Leaf) Lost() bool { return l.lost.Load() }

// LostReason says why the leaf is lost (nil if it is not): an error
// matching ErrDisconnected, ErrChanged (an *IdentityError) or ErrHeld.
func (l *Leaf) LostReason() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost.Load() {
		return nil
	}
	return l.reason
}

// SetLost(true) marks the leaf lost as the engine decided it (an orderly
// removal, a record that says so): its connections are closed, nothing
// dials until SetLost(false), and I/O fails with a *LostError whose
// reason is ErrHeld. SetLost(false) lifts that: the next I/O (or Watch)
// dials again and checks the identity, and a server that does not answer
// within the grace period makes the leaf lost again, through OnLost.
// SetLost never calls OnLost.
func (l *Leaf) SetLost(lost bool) {
	l.mu.Lock()
	if lost {
		if l.held {
			l.mu.Unlock()
			return
		}
		l.held = true
		l.markLostLocked(ErrHeld)
		l.endSessionLocked()
	} else {
		l.held = false
		l.lost.Store(false)
		l.reason = nil
	}
	l.wakeLocked()
	l.mu.Unlock()
}

// AssumeLost marks the leaf lost because its record says it was, without
// holding it there as SetLost does: I/O fails (ErrDisconnected, "recorded
// lost") until a connection to the same export restores it, which OnLost
// reports (lost false), as for a loss the leaf saw itself. Only a watched
// leaf dials while lost: call Watch after it. It does not call OnLost.
func (l *Leaf) AssumeLost() {
	l.mu.Lock()
	if !l.held && l.markLostLocked(fmt.Errorf("%w: recorded lost", ErrDisconnected)) {
		l.wakeLocked()
	}
	l.mu.Unlock()
}

// Watch starts the leaf's supervision now rather than at its first I/O:
// it dials (in the background), keeps its connections up, polls the
// server's bad ranges and reports losses and returns through OnLost. The
// daemon calls it for every NBD leaf it opens; a process that only lists
// tables never does.
func (l *Leaf) Watch() {
	l.mu.Lock()
	l.startLocked(nil)
	l.mu.Unlock()
}

// Connected reports how many connections the leaf has up now.
func (l *Leaf) Connected() int {
	if p := l.live.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// enter counts an I/O in flight so that Close waits for it; the caller
// calls exit whatever the error.
func (l *Leaf) enter() error {
	l.inflight.Add(1)
	if l.closed.Load() {
		return leafError(l.name, ErrClosed)
	}
	if l.lost.Load() {
		return l.lostError()
	}
	return nil
}

func (l *Leaf) exit() { l.inflight.Add(-1) }

func (l *Leaf) lostError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reason
	if r == nil {
		r = ErrHeld
	}
	return &LostError{Leaf: l.name, Since: l.lostSince, Reason: r}
}

// Close ends the leaf: I/O in flight fails with ErrClosed (requests are
// abandoned, never written into the caller's buffer afterwards), and the
// connections are closed. Closing twice is harmless.
func (l *Leaf) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	l.cancel()
	l.endSessionLocked()
	l.wakeLocked()
	l.mu.Unlock()
	for wait := time.Microsecond; l.inflight.Load() != 0; wait = min(2*wait, time.Millisecond) {
		time.Sleep(wait)
	}
	l.routines.Wait()
	return nil
}
