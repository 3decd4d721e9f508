package service

import (
	"context"
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/control"
)

// The rules of the socket, in one place. The daemon runs as root; a
// client is whoever the kernel says connected (SO_PEERCRED, SO_PEERGROUPS,
// recorded at connect, see listen.go), and may do what its right allows:
//
//   - reports (list, info, table, status, map, rmap, badblocks, events,
//     leaves, the event stream): anyone who can connect to the socket (it
//     is 0660, root and --group, unless its owner opens it further); the
//     names of files behind bad ranges (files, and the files follow-ups of
//     events) only root and the group;
//   - changing state (every command that creates, loads, removes, claims,
//     injects...) and reading or writing device data (read and write,
//     every I/O handle and stream): root, and members of --group (primary
//     or supplementary), nobody else;
//   - and, for a client that is not root, whatever it makes the daemon
//     use must be what it could open itself: that is the engine's rule,
//     applied to the commands it runs for the client (control/peer.go,
//     given the client as control.WithPeer).
//
// So a member of the group may read and write every mapped device and
// change every table, but put under a table only leaves it may open itself
// (read-write; read-only leaves only under read-only devices).

// right is what a method needs of its caller.
type right int

const (
	rightQuery  right = iota // reports: anyone connected
	rightChange              // changes state: root and the group
	rightData                // reads or writes device data: root and the group
)

// rightOf returns what method needs; unknown methods need nothing (they
// fail as unknown).
func rightOf(method string) (right, string) {
	switch method {
	case methodOpen:
		return rightData, "reading or writing device data"
	case methodSubscribe:
		return rightQuery, ""
	}
	m, ok := methods[method]
	if !ok {
		return rightQuery, ""
	}
	return m.right, method + " changes state"
}

// authorize refuses method to a peer whose right does not cover it.
func (c *conn) authorize(method string) error {
	r, what := rightOf(method)
	if r == rightQuery || c.privileged() {
		return nil
	}
	return c.refuse(what)
}

// privileged reports whether the peer is root or in the daemon's group.
func (c *conn) privileged() bool {
	if c.peer.Root() {
		return true
	}
	return c.s.gid >= 0 && c.peer.InGroup(uint32(c.s.gid))
}

// refuse is the refusal of what only root and the group may do.
func (c *conn) refuse(what string) error {
	who := "root"
	if c.s.cfg.Group != "" {
		who = "root and group " + c.s.cfg.Group
	}
	return fmt.Errorf("%w: %s, which only %s may do (you are uid %d)", syscall.EACCES, what, who, c.peer.UID)
}

// forPeer is the context a command runs in for this connection's peer:
// the engine checks what the peer makes it use (control.WithPeer). dir is
// where the peer's relative paths start.
func (c *conn) forPeer(ctx context.Context, dir string) context.Context {
	return control.WithPeer(ctx, control.Peer{Cred: c.peer, Dir: dir})
}
