package control

// A stand-in for the peer context that helper "security" is writing in
// control/peer.go (same names, a subset of what they do): a command run
// for a client of the daemon carries the client's credentials, and the
// NBD leaf opener applies nbdleaf.CheckAccess with them. When peer.go
// lands, this file goes: its declarations are the same.

import (
	"context"

	"github.com/daxstack/daxstack/nbdleaf"
)

// Peer is who a command runs for, when it is not this process itself: the
// client at the other end of the daemon's socket.
type Peer struct {
	Cred nbdleaf.Cred
	Dir  string // the directory the peer's relative paths start at
}

type peerKey struct{}

// WithPeer returns a context whose commands run for p. A context without
// one runs commands as this process, with its own rights.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerOf returns the peer a context's commands run for, if any.
func PeerOf(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// actor is the peer the command holding the engine lock runs for.
type actor struct {
	Peer
}

// forPeer returns fn made to run as ctx's peer (under the engine lock).
func (e *Engine) forPeer(ctx context.Context, fn func() error) func() error {
	p, ok := PeerOf(ctx)
	if !ok {
		return fn
	}
	return func() error {
		e.actor = &actor{Peer: p}
		defer func() { e.actor = nil }()
		return fn()
	}
}

// runFor is run, with the command running for ctx's peer.
func (e *Engine) runFor(ctx context.Context, fn func() error) error {
	return e.locked(e.forPeer(ctx, func() error { return e.mutate(fn) }))
}
