// Package peer is who is at the other end of the daemon's socket, and
// acting as them.
//
// The daemon runs as root; a request it serves must not reach what its
// sender could not reach itself. The kernel records the sender's
// credentials on a unix socket at connect (FromConn: SO_PEERCRED and
// SO_PEERGROUPS). As runs a function on an OS thread of its own that wears
// those credentials as its filesystem identity (setfsuid, setfsgid,
// setgroups, which on Linux change only the calling thread when called
// as raw system calls), so that whatever the function opens, the kernel
// checks as it would for the peer: modes, ACLs, every directory on the
// way, read-only mounts, LSMs. Open is the common case of it: open a path
// as the peer and keep the descriptor, whose fstat then says which object
// the peer could reach (see the daemon's leaf rule in control's peer.go).
//
// The main thread never wears a peer's credentials: As always starts a
// goroutine of its own and locks it to its thread, and gives the thread
// back to the runtime only once its own credentials are verified restored
// (otherwise the thread ends with the goroutine).
package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cred is a peer's credentials: what SO_PEERCRED and SO_PEERGROUPS tell of
// the process at the other end of a unix socket (FromConn).
type Cred struct {
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
}

// Root reports whether the credentials are root's (uid 0).
func (c Cred) Root() bool { return c.UID == 0 }

// InGroup reports whether gid is the primary or a supplementary group.
func (c Cred) InGroup(gid uint32) bool {
	return c.GID == gid || slices.Contains(c.Groups, gid)
}

// String names the credentials as id(1) would, by number.
func (c Cred) String() string { return fmt.Sprintf("uid %d gid %d groups %v", c.UID, c.GID, c.Groups) }

// FromConn returns the credentials of the process at the other end of a
// unix socket, as the kernel recorded them at connect (SO_PEERCRED's uid
// and gid, SO_PEERGROUPS' supplementary groups), and its pid.
func FromConn(c *net.UnixConn) (Cred, int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, 0, err
	}
	var (
		out  Cred
		pid  int
		serr error
	)
	err = raw.Control(func(fd uintptr) {
		uc, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			serr = fmt.Errorf("SO_PEERCRED: %w", err)
			return
		}
		out.UID, out.GID, pid = uc.Uid, uc.Gid, int(uc.Pid)
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
			out.Groups = append([]uint32{}, buf[:n/4]...)
			return
		}
	})
	if err == nil {
		err = serr
	}
	return out, pid, err
}

// As runs fn on a thread of its own whose filesystem credentials are c's
// (fsuid, fsgid, supplementary groups), and gives the thread its own back
// afterwards. fn must not start goroutines that rely on those credentials.
//
// The thread is given back to the runtime only once its credentials are
// verified restored; if they cannot be, the goroutine exits still locked
// and the runtime ends the thread with it. (Ending threads is not the
// default because a child started from a thread with PR_SET_PDEATHSIG, as
// exec's Pdeathsig and nbdkit --exit-with-parent do, is killed when that
// thread ends.)
func As(c Cred, fn func() error) error {
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

// Open opens path as the peer c would (As), with flags (O_CLOEXEC is
// added). The error is the kernel's, in an *os.PathError.
func Open(c Cred, path string, flags int) (*os.File, error) {
	var f *os.File
	err := As(c, func() error {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		f = os.NewFile(uintptr(fd), path)
		return nil
	})
	return f, err
}

// threadCred reads the calling thread's filesystem credentials.
func threadCred() (Cred, error) {
	uid, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0) // -1: no change, returns the current
	gid, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0)
	c := Cred{UID: uint32(uid), GID: uint32(gid)}
	n, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0)
	if e != 0 {
		return Cred{}, fmt.Errorf("peer: getgroups: %w", e)
	}
	c.Groups = make([]uint32, n)
	if n > 0 {
		m, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, n, uintptr(unsafe.Pointer(&c.Groups[0])), 0)
		if e != 0 {
			return Cred{}, fmt.Errorf("peer: getgroups: %w", e)
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
		return fmt.Errorf("peer: setgroups: %w", e)
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(c.GID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(got) != c.GID {
		return errors.New("peer: setfsgid did not take")
	}
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(c.UID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != c.UID {
		return errors.New("peer: setfsuid did not take")
	}
	return nil
}
