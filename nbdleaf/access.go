package nbdleaf

import (
	"context"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/peer"
)

// The daemon runs as root, so a peer must not be able to make it connect
// where the peer itself could not. The rule for NBD references:
//
//   - root may name any server;
//   - any other peer may name only a unix socket it could connect to
//     itself: connect(2) needs search permission on every directory of
//     the path and write permission on the socket;
//   - TCP servers (nbd://, nbds://) are for root only: a TCP connection
//     carries no credentials the daemon could check for the peer, and the
//     daemon's address may reach servers the peer's cannot.
//
// CheckAccess applies it when a table is loaded. The check is the
// kernel's own: faccessat2(W_OK, AT_EACCESS) from a thread that wears the
// peer's filesystem credentials (setfsuid, setfsgid, setgroups affect
// only the calling thread on Linux), so ACLs, capabilities dropped with
// fsuid 0, and every directory on the way count exactly as they would for
// the peer. The thread is thrown away afterwards.
//
// A check is only true when it is made: the owner of a directory on the
// path can later swap the socket for a link to one the peer may not
// reach. Opener.Open and Lazy take the peer's Cred for that reason: every
// connection such a leaf makes, reconnections included, is dialled with
// the peer's credentials (DialAs), so the kernel checks each one.

// Cred is a peer's credentials (internal/peer's): what SO_PEERCRED and
// SO_PEERGROUPS tell of the process at the other end of a unix socket
// (PeerCred).
type Cred = peer.Cred

// CheckAccess reports whether a peer with credentials c may make the
// daemon use the NBD URI ref (see the rules above). A refusal matches
// ErrDenied (syscall.EACCES) and says why.
func CheckAccess(ref string, c Cred) error {
	u, err := parse(ref)
	if err != nil {
		return err
	}
	if c.UID == 0 {
		return nil
	}
	if u.Network != "unix" {
		return fmt.Errorf("%w: %s: only root may name a TCP server", ErrDenied, u)
	}
	err = AsPeer(c, func() error {
		if err := unix.Faccessat2(unix.AT_FDCWD, u.Address, unix.W_OK, unix.AT_EACCESS); err != nil {
			return &os.PathError{Op: "connect", Path: u.Address, Err: err}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: uid %d may not connect to %s: %w", ErrDenied, c.UID, u.Address, err)
	}
	fi, err := os.Stat(u.Address)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s is not a socket", ErrDenied, u.Address)
	}
	return nil
}

// DialAs connects to the unix socket at path with a peer's credentials,
// so that the kernel decides whether the peer may.
func DialAs(ctx context.Context, c Cred, path string) (net.Conn, error) {
	var conn net.Conn
	err := AsPeer(c, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", path)
		return err
	})
	return conn, err
}

// AsPeer runs fn on a thread of its own whose filesystem credentials are
// c's, and gives the thread its own back afterwards (peer.As).
func AsPeer(c Cred, fn func() error) error { return peer.As(c, fn) }

// PeerCred returns the credentials of the process at the other end of a
// unix socket, as the kernel recorded them at connect: SO_PEERCRED's uid
// and gid and SO_PEERGROUPS' supplementary groups (peer.FromConn).
func PeerCred(c *net.UnixConn) (Cred, error) {
	cred, _, err := peer.FromConn(c)
	return cred, err
}
