package service

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// Listening: the socket is mode 0660, owned by root and the configured
// group; every connection's peer credentials decide what it may do (see
// peer.go).

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
