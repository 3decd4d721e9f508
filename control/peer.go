package control

// Commands run for a peer. The daemon runs as root and serves clients that
// are not; what a client may make it do is decided in two places, each
// once: which commands a client may send at all (the daemon's, see
// service/peer.go), and here, which leaves a command may make the engine
// use on a client's behalf:
//
//   - A leaf a table names (create, create-concise, load), a leaf claimed,
//     a leaf opened for I/O, or poisoned or cleared directly, must be one
//     the peer could open itself: the engine opens its path (a
//     "major:minor" reference: its device node) as the peer (peer.Open:
//     the kernel checks modes, ACLs, every directory on the way, read-only
//     mounts), read-write, or read-only when read-write is refused.
//   - A leaf the peer may only read can back only a read-only device (and
//     can only be opened for reading, never poisoned or cleared); a
//     table of a writable device built for a peer may not use a read-only
//     mapped device either, which would let it write through.
//   - What was checked is what is used: the leaf opened afterwards (as
//     root, by dax.Opener.Open) must be the very object the peer's
//     descriptor is (dax.Leaf.Is: the same file by st_dev and st_ino, the
//     same device node by number), and the leaf's own first I/O checks the
//     same again when it opens and maps the path. A path swapped between
//     the two opens is refused with dax.ErrChanged; nothing of it is used.
//   - Relative paths are the peer's: they start at the directory the
//     client says it works in (Peer.Dir), not at the daemon's. A peer that
//     lies about it names a path it could have named whole.
//
// Root (uid 0) is checked for nothing, as dmsetup run by root is not. The
// engine's own opens (stored tables at start, rescans, leaves coming
// back) are not a peer's: they open only leaves recorded earlier, and
// those must match their recorded identity (see openLeaf).

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/peer"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/stack"
)

// Peer is who a command runs for, when it is not this process itself: the
// client at the other end of the daemon's socket.
type Peer struct {
	Cred peer.Cred
	// Dir is the directory the peer's relative paths start at ("": this
	// process's working directory).
	Dir string
}

type peerKey struct{}

// WithPeer returns a context whose commands run for p (see the rules at
// the top of peer.go). A context without one runs commands as this
// process, with its own rights.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerOf returns the peer a context's commands run for, if any.
func PeerOf(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// actor is the peer the command holding the engine lock runs for, with
// what its leaves allow.
type actor struct {
	Peer
	readOnly map[string]string // IDs of leaves the peer may only read: their names
}

// ErrPeerReadOnly: a leaf the peer may only read was asked to be written
// (a writable device over it, a handle opened for writing, poison). It
// matches syscall.EACCES.
var ErrPeerReadOnly = fmt.Errorf("%w: the peer may only read it", syscall.EACCES)

// forPeer runs fn under the engine lock as ctx's peer: every leaf fn
// opens is checked as the rules above say.
func (e *Engine) forPeer(ctx context.Context, fn func() error) func() error {
	p, ok := PeerOf(ctx)
	if !ok {
		return fn
	}
	return func() error {
		e.actor = &actor{Peer: p, readOnly: map[string]string{}}
		defer func() { e.actor = nil }()
		return fn()
	}
}

// lockedFor is locked, with the command running for ctx's peer.
func (e *Engine) lockedFor(ctx context.Context, fn func() error) error {
	return e.locked(e.forPeer(ctx, fn))
}

// runFor is run, with the command running for ctx's peer: its leaves are
// checked as they are opened, and at the end no table the command built
// may use a mapped device in use outside daxstack (checkClaims), nor may
// a writable one rest on what the peer may only read.
func (e *Engine) runFor(ctx context.Context, fn func() error) error {
	return e.locked(e.forPeer(ctx, func() error {
		before := e.tablesNow()
		return e.mutate(func() error {
			if err := fn(); err != nil {
				return err
			}
			if err := e.checkClaims(before); err != nil {
				return err
			}
			return e.checkWritable(before)
		})
	}))
}

// tablesNow returns every table of every device, in either slot.
func (e *Engine) tablesNow() map[*stack.Table]bool {
	out := map[*stack.Table]bool{}
	for _, d := range e.pool.Devices() {
		for _, t := range []*stack.Table{d.Active(), d.Inactive()} {
			if t != nil {
				out[t] = true
			}
		}
	}
	return out
}

// checkWritable refuses a writable device with a table built by this
// command (not in before) over a leaf its peer may only read, or over a
// read-only mapped device.
func (e *Engine) checkWritable(before map[*stack.Table]bool) error {
	a := e.actor
	if a == nil || a.Cred.Root() {
		return nil
	}
	for _, d := range e.pool.Devices() {
		if d.ReadOnly() {
			continue
		}
		for _, t := range []*stack.Table{d.Active(), d.Inactive()} {
			if t == nil || before[t] {
				continue
			}
			for _, c := range t.Devs() {
				if c.IsLeaf() {
					if name, ok := a.readOnly[c.Leaf().ID()]; ok {
						return opErr("", d.Name(), d, fmt.Errorf("%s: %w (uid %d): a device over it must be read-only (create -r)", name, ErrPeerReadOnly, a.Cred.UID))
					}
				} else if md := c.Mapped(); md != nil && md.ReadOnly() {
					return opErr("", d.Name(), d, fmt.Errorf("%w: %s is read-only: only root may put a writable device over it", syscall.EACCES, md.Name()))
				}
			}
		}
	}
	return nil
}

// peerRef is openLeaf's first step: ref as the command's peer means it,
// and, for a peer that is not root, the check that it may open it. bind
// (nil when nothing is to check) must then accept the leaf opened for the
// reference before it is used.
func (e *Engine) peerRef(ref string) (string, func(*dax.Leaf) error, error) {
	a := e.actor
	if a == nil {
		return ref, nil, nil
	}
	if a.Dir != "" && !filepath.IsAbs(ref) && !dax.IsDevno(ref) {
		ref = filepath.Join(a.Dir, ref)
	}
	if a.Cred.Root() {
		return ref, nil, nil
	}
	path, err := e.opener.Resolve(ref)
	if err != nil {
		return "", nil, err
	}
	st, write, err := peerStat(a.Cred, path)
	if err != nil {
		return "", nil, fmt.Errorf("dax: open %s: uid %d may not open it: %w", ref, a.Cred.UID, err)
	}
	return ref, func(l *dax.Leaf) error {
		if !l.Is(&st) {
			return fmt.Errorf("dax: open %s: %s is not what uid %d opened: %w", ref, path, a.Cred.UID, dax.ErrChanged)
		}
		if !write {
			a.readOnly[l.ID()] = l.Name()
		}
		return nil
	}, nil
}

// peerStat opens path as c (read-write, else read-only) and returns what
// the descriptor is, and whether it could be opened for writing. The
// descriptor is closed: its fstat is what the leaf is bound to.
func peerStat(c peer.Cred, path string) (unix.Stat_t, bool, error) {
	var st unix.Stat_t
	const flags = unix.O_NOCTTY | unix.O_NONBLOCK // never a terminal, never wait (a FIFO)
	write := true
	f, err := peer.Open(c, path, unix.O_RDWR|flags)
	if err != nil && deniedWrite(err) {
		write = false
		f, err = peer.Open(c, path, unix.O_RDONLY|flags)
	}
	if err != nil {
		return st, false, err
	}
	defer f.Close()
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return st, false, err
	}
	return st, write, nil
}

// deniedWrite reports whether an open for writing failed because writing
// is not allowed (and reading may be).
func deniedWrite(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.ETXTBSY) || errors.Is(err, syscall.EISDIR)
}

// peerUse checks that the command's peer may use leaf dev directly (I/O,
// poison): opening it (by its reference, as a table would) checks the
// peer's access to it; write says the use changes it, which a leaf the
// peer may only read refuses.
func (e *Engine) peerUse(dev *stack.Dev, write bool) error {
	a := e.actor
	if a == nil || a.Cred.Root() || dev == nil || !dev.IsLeaf() {
		return nil
	}
	r, ok := dev.Leaf().(*leafRef)
	if !ok {
		return nil // not a leaf this engine opens (a test's)
	}
	if nl, ok := r.cur().(*nbdleaf.Leaf); ok {
		return nbdleaf.CheckAccess(nl.Ref(), a.Cred)
	}
	l := r.cur().(*dax.Leaf)
	_, bind, err := e.peerRef(l.Ref())
	if err != nil {
		return err
	}
	if err := bind(l); err != nil {
		return err
	}
	if _, ro := a.readOnly[l.ID()]; ro && write {
		return fmt.Errorf("%s: %w (uid %d)", l.Name(), ErrPeerReadOnly, a.Cred.UID)
	}
	return nil
}
