package nbdleaf_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbdleaf"
)

// newUser creates an unprivileged user for the test (testenv.NewUser)
// and gives its credentials.
func newUser(t *testing.T) nbdleaf.Cred {
	t.Helper()
	u := testenv.NewUser(t, "nbdleaf")
	return nbdleaf.Cred{UID: u.UID, GID: u.GID}
}

// connectsAs is the oracle: whether a real process with credentials c
// can connect(2) to the unix socket at path.
func connectsAs(t *testing.T, c nbdleaf.Cred, path string) bool {
	t.Helper()
	testenv.NeedCommand(t, "/usr/bin/python3")
	cmd := exec.Command("/usr/bin/python3", "-c",
		"import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	return cmd.Run() == nil
}

// listenUnix listens on path (mode applied after bind) and records the
// credentials of whoever connects.
func listenUnix(t *testing.T, path string, mode os.FileMode) *creds {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	c := &creds{}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			cr, err := nbdleaf.PeerCred(conn.(*net.UnixConn))
			c.mu.Lock()
			c.seen = append(c.seen, cr)
			c.errs = append(c.errs, err)
			c.mu.Unlock()
			conn.Close()
		}
	}()
	return c
}

type creds struct {
	mu   sync.Mutex
	seen []nbdleaf.Cred
	errs []error
}

// TestCheckAccess compares CheckAccess with what the kernel lets a real
// unprivileged process do, over sockets and directories of many modes,
// symbolic links and supplementary groups; DialAs and PeerCred with it.
func TestCheckAccess(t *testing.T) {
	peer := newUser(t)
	const extraGID = 4242424 // a group the user is given only as a supplementary one
	base := t.TempDir()
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // the test's own directories; others may search them
	}
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := mk("open", 0o755)
	closed := mk("closed", 0o700)
	noSearch := mk("nosearch", 0o766)
	searchOnly := mk("searchonly", 0o711)
	mine := mk("mine", 0o755)
	if err := os.Chown(mine, int(peer.UID), int(peer.GID)); err != nil {
		t.Fatal(err)
	}
	sock := func(dir, name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		listenUnix(t, p, mode)
		return p
	}
	world := sock(open, "world.sock", 0o777)
	rootOnly := sock(open, "root.sock", 0o755)
	group := sock(open, "group.sock", 0o770)
	if err := os.Chown(group, 0, extraGID); err != nil {
		t.Fatal(err)
	}
	owned := sock(open, "owned.sock", 0o700)
	if err := os.Chown(owned, int(peer.UID), int(peer.GID)); err != nil {
		t.Fatal(err)
	}
	hidden := sock(closed, "hidden.sock", 0o777)
	unsearchable := sock(noSearch, "s.sock", 0o777)
	throughX := sock(searchOnly, "s.sock", 0o777)
	linkToHidden, linkToWorld := filepath.Join(mine, "evil.sock"), filepath.Join(mine, "fine.sock")
	if err := os.Symlink(hidden, linkToHidden); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(world, linkToWorld); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(open, "plain")
	os.WriteFile(plain, nil, 0o777)
	os.Chmod(plain, 0o777)

	withGroup := peer
	withGroup.Groups = []uint32{extraGID}
	for _, c := range []struct {
		name string
		path string
		cred nbdleaf.Cred
		want bool
	}{
		{"world-writable socket", world, peer, true},
		{"socket without write for others", rootOnly, peer, false},
		{"the peer's own socket", owned, peer, true},
		{"group socket, in the group", group, withGroup, true},
		{"group socket, not in the group", group, peer, false},
		{"socket in a directory without search", hidden, peer, false},
		{"directory readable but not searchable", unsearchable, peer, false},
		{"directory searchable only", throughX, peer, true},
		{"link to a hidden socket", linkToHidden, peer, false},
		{"link to an open socket", linkToWorld, peer, true},
		{"no such socket", filepath.Join(open, "nothing.sock"), peer, false},
		{"not a socket", plain, peer, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			oracle := connectsAs(t, c.cred, c.path)
			if oracle != c.want {
				t.Fatalf("the kernel says %v for the peer, the test expected %v: the setup is wrong", oracle, c.want)
			}
			uri := unixURI(c.path, "e")
			err := nbdleaf.CheckAccess(uri, c.cred)
			if (err == nil) != c.want {
				t.Errorf("CheckAccess = %v, the kernel lets the peer connect: %v", err, c.want)
			}
			if err != nil && (!errors.Is(err, nbdleaf.ErrDenied) || !errors.Is(err, syscall.EACCES)) {
				t.Errorf("refusal %v does not match ErrDenied and EACCES", err)
			}
			if err := nbdleaf.CheckAccess(uri, nbdleaf.Cred{}); err != nil && c.path != plain && c.path != filepath.Join(open, "nothing.sock") {
				t.Errorf("root was refused: %v", err)
			}
			conn, err := nbdleaf.DialAs(context.Background(), c.cred, c.path)
			if (err == nil) != c.want {
				t.Errorf("DialAs: %v, want success %v", err, c.want)
			}
			if conn != nil {
				conn.Close()
			}
		})
	}

	// The daemon's side of its socket: who is the peer?
	seen := listenUnix(t, filepath.Join(open, "daemon.sock"), 0o777)
	if !connectsAs(t, withGroup, filepath.Join(open, "daemon.sock")) {
		t.Fatal("the peer could not reach the daemon's socket")
	}
	waitFor(t, 5*time.Second, "peer seen", func() bool { seen.mu.Lock(); defer seen.mu.Unlock(); return len(seen.seen) > 0 })
	seen.mu.Lock()
	got, gerr := seen.seen[0], seen.errs[0]
	seen.mu.Unlock()
	if gerr != nil || got.UID != peer.UID || got.GID != peer.GID || !slices.Equal(got.Groups, []uint32{extraGID}) {
		t.Errorf("PeerCred = %+v, %v; want uid %d gid %d groups [%d]", got, gerr, peer.UID, peer.GID, extraGID)
	}

	// No thread of the process keeps the peer's credentials once the
	// goroutines that wore them have ended (their threads end with them).
	waitFor(t, 5*time.Second, "threads back to root's credentials", func() bool {
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, st := range tasks {
			b, _ := os.ReadFile(st) // an error: the thread ended
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") && f[4] != "0" {
					return false
				}
			}
		}
		return true
	})

	// TCP servers are root's.
	if err := nbdleaf.CheckAccess("nbd://127.0.0.1:10809/e", peer); !errors.Is(err, nbdleaf.ErrDenied) {
		t.Errorf("TCP for a non-root peer: %v", err)
	}
	if err := nbdleaf.CheckAccess("nbds://127.0.0.1:10809/e", nbdleaf.Cred{}); err != nil {
		t.Errorf("TCP for root: %v", err)
	}
	if err := nbdleaf.CheckAccess("/dev/pmem0", peer); !errors.Is(err, nbdleaf.ErrNotRef) {
		t.Errorf("a path: %v", err)
	}
}

// TestOpenAs: a leaf opened for a peer dials as the peer, so a socket the
// peer may not reach is refused by the kernel, on every connection.
func TestOpenAs(t *testing.T) {
	peer := newUser(t)
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	sock := filepath.Join(dir, "s")
	startNbdkit(t, sock, "memory", "1M")
	uri := unixURI(sock, "")
	os.Chmod(sock, 0o755)
	o := opener(nil, nil)
	if _, err := o.Open(context.Background(), uri, &peer); !errors.Is(err, syscall.EACCES) {
		t.Errorf("Open as a peer without write on the socket: %v", err)
	}
	os.Chmod(sock, 0o777)
	l, err := o.Open(context.Background(), uri, &peer)
	if err != nil {
		t.Fatalf("Open as a peer allowed to connect: %v", err)
	}
	defer l.Close()
	if _, err := l.WriteAt([]byte("peer"), 0); err != nil {
		t.Error(err)
	}
}
