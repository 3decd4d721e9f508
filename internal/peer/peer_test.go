package peer_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/peer"
	"github.com/daxstack/daxstack/internal/testenv"
)

func TestInGroup(t *testing.T) {
	c := peer.Cred{UID: 7, GID: 70, Groups: []uint32{71, 72}}
	for gid, want := range map[uint32]bool{70: true, 71: true, 72: true, 73: false, 0: false} {
		if got := c.InGroup(gid); got != want {
			t.Errorf("InGroup(%d) = %v, want %v", gid, got, want)
		}
	}
	if c.Root() || !(peer.Cred{}).Root() {
		t.Error("Root")
	}
}

// TestOpen checks Open against the kernel's rules for a real unprivileged
// user: a root-only file, a file others may only read, the user's own
// file in a directory others may not search.
func TestOpen(t *testing.T) {
	u := testenv.NewUser(t, "dxpeer")
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name string, mode os.FileMode, owner uint32) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		if err := os.Chown(p, int(owner), -1); err != nil {
			t.Fatal(err)
		}
		return p
	}
	closed := filepath.Join(dir, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	c := peer.Cred{UID: u.UID, GID: u.GID}
	for _, x := range []struct {
		name  string
		path  string
		flags int
		want  error
	}{
		{"root-only, read", mk("secret", 0o600, 0), unix.O_RDONLY, syscall.EACCES},
		{"others read, read", mk("public", 0o644, 0), unix.O_RDONLY, nil},
		{"others read, write", filepath.Join(dir, "public"), unix.O_RDWR, syscall.EACCES},
		{"own, write", mk("own", 0o600, u.UID), unix.O_RDWR, nil},
		{"own, in a closed directory", mk("closed/own", 0o600, u.UID), unix.O_RDWR, syscall.EACCES},
	} {
		t.Run(x.name, func(t *testing.T) {
			f, err := peer.Open(c, x.path, x.flags)
			if f != nil {
				f.Close()
			}
			if (x.want == nil) != (err == nil) || (x.want != nil && !errors.Is(err, x.want)) {
				t.Errorf("Open as uid %d: %v, want %v", u.UID, err, x.want)
			}
			// Root, after, on whatever thread: every one opens.
			f, err = peer.Open(peer.Cred{}, x.path, x.flags)
			if err != nil {
				t.Errorf("Open as root after: %v", err)
			} else {
				f.Close()
			}
		})
	}
	// The process's own credentials are untouched.
	if f, err := os.OpenFile(filepath.Join(dir, "secret"), os.O_RDWR, 0); err != nil {
		t.Errorf("this process lost root's access: %v", err)
	} else {
		f.Close()
	}
}

// TestFromConn: the credentials of a real client, supplementary groups
// included.
func TestFromConn(t *testing.T) {
	testenv.NeedRoot(t)
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := peer.Cred{UID: 0, GID: 0}
	if gs, err := unix.Getgroups(); err == nil {
		for _, g := range gs {
			want.Groups = append(want.Groups, uint32(g))
		}
	}
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, pid, err := peer.FromConn(c)
	if err != nil || got.UID != want.UID || got.GID != uint32(os.Getgid()) || pid != os.Getpid() {
		t.Fatalf("FromConn = %+v pid %d, %v; want uid 0 gid %d pid %d", got, pid, err, os.Getgid(), os.Getpid())
	}
	slices.Sort(got.Groups)
	slices.Sort(want.Groups)
	if !slices.Equal(got.Groups, want.Groups) {
		t.Errorf("groups %v, want %v", got.Groups, want.Groups)
	}
}
