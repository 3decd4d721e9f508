package nbdleaf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
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

// Cred is a peer's credentials: what SO_PEERCRED and SO_PEERGROUPS tell of
// the process at the other end of a unix socket (PeerCred).
type Cred struct {
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
}

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
// c's (fsuid, fsgid, supplementary groups), and gives the thread its own
// back afterwards. fn must not start goroutines that rely on those
// credentials.
//
// The thread is given back to the runtime only once its credentials are
// verified restored; if they cannot be, the goroutine exits still locked
// and the runtime ends the thread with it. (Ending threads is not the
// default because a child started from a thread with PR_SET_PDEATHSIG, as
// exec's Pdeathsig and nbdkit --exit-with-parent do, is killed when that
// thread ends.)
func AsPeer(c Cred, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := threadCred()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		err = wear(c)
		if err == nil {
			err = fn()
		}
		if wear(own) == nil {
			if now, err := threadCred(); err == nil && now.UID == own.UID && now.GID == own.GID &&
				slices.Equal(now.Groups, own.Groups) {
				runtime.UnlockOSThread()
			}
		}
		done <- err
	}()
	return <-done
}

// threadCred reads the calling thread's filesystem credentials.
func threadCred() (Cred, error) {
	uid, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0) // -1: no change, returns the current
	gid, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0)
	c := Cred{UID: uint32(uid), GID: uint32(gid)}
	n, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0)
	if e != 0 {
		return Cred{}, fmt.Errorf("nbdleaf: getgroups: %w", e)
	}
	c.Groups = make([]uint32, n)
	if n > 0 {
		m, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, n, uintptr(unsafe.Pointer(&c.Groups[0])), 0)
		if e != 0 {
			return Cred{}, fmt.Errorf("nbdleaf: getgroups: %w", e)
		}
		c.Groups = c.Groups[:m]
	}
	return c, nil
}

// wear sets the calling thread's filesystem credentials to c's. The raw
// system calls change this thread only (the libc and Go wrappers change
// every thread of the process). Leaving root, the fsuid goes last: that
// drops the file capabilities (CAP_DAC_OVERRIDE and the like) from the
// thread's effective set, as the peer has none; back to root it goes
// first, which raises them again.
func wear(c Cred) error {
	var gp unsafe.Pointer
	if len(c.Groups) > 0 {
		gp = unsafe.Pointer(&c.Groups[0])
	}
	if c.UID == 0 {
		unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.Groups)), uintptr(gp), 0); e != 0 {
		return fmt.Errorf("nbdleaf: setgroups: %w", e)
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(c.GID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(got) != c.GID {
		return errors.New("nbdleaf: setfsgid did not take")
	}
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(c.UID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != c.UID {
		return errors.New("nbdleaf: setfsuid did not take")
	}
	return nil
}

// PeerCred returns the credentials of the process at the other end of a
// unix socket, as the kernel recorded them at connect: SO_PEERCRED's uid
// and gid and SO_PEERGROUPS' supplementary groups.
func PeerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var out Cred
	var serr error
	err = raw.Control(func(fd uintptr) {
		uc, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			serr = fmt.Errorf("SO_PEERCRED: %w", err)
			return
		}
		out.UID, out.GID = uc.Uid, uc.Gid
		buf := make([]uint32, 32)
		for {
			n := uint32(len(buf) * 4)
			_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
			if e == unix.ERANGE && int(n/4) > len(buf) && n/4 <= 1<<16 {
				buf = make([]uint32, n/4)
				continue
			}
			if e != 0 {
				serr = fmt.Errorf("SO_PEERGROUPS: %w", e)
				return
			}
			out.Groups = append([]uint32(nil), buf[:n/4]...)
			return
		}
	})
	if err == nil {
		err = serr
	}
	return out, err
}
