package service

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Listening and peers: the socket is mode 0660, owned by root and the
// configured group; every connection's peer credentials decide what it may
// do.

// listen creates the socket: a stale socket file (no one answering) is
// replaced; a live one means another daemon runs.
func (s *Server) listen() (*net.UnixListener, error) {
	path := s.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrRunning, path)
	}
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	if s.gid >= 0 {
		if err := os.Chown(path, 0, s.gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("service: group %s: %w", g, err)
	}
	return strconv.Atoi(grp.Gid)
}

func peerCred(uc *net.UnixConn) (*unix.Ucred, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// mayChange reports whether the peer may run commands that change state:
// root, or a member (primary or supplementary) of the configured group.
func (c *conn) mayChange() bool {
	if c.cred.Uid == 0 {
		return true
	}
	if c.s.gid < 0 {
		return false
	}
	if int(c.cred.Gid) == c.s.gid {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cred.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(g) {
				if n, err := strconv.Atoi(f); err == nil && n == c.s.gid {
					return true
				}
			}
		}
	}
	return false
}
