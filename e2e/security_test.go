package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

// The daemon runs as root. These tests run clients as an unprivileged user
// made for the test, in the daemon's group (a member) or not (a stranger),
// and check that neither can make the daemon reach what the user could not
// reach itself (issue #10, items 1 and 2).

// runAsIn is runAs with stdin.
func (s *sandbox) runAsIn(cred *syscall.Credential, stdin string, args ...string) runResult {
	s.t.Helper()
	c := s.cmd(args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	c.Stdin = strings.NewReader(stdin)
	return s.tryCmd(c)
}

// refused checks that a command exited 1 with EACCES's text.
func refused(t *testing.T, r runResult, what string) {
	t.Helper()
	if r.code != 1 || !strings.Contains(r.err, "permission denied") {
		t.Errorf("%s: exit %d, stderr %q; want it refused with permission denied", what, r.code, r.err)
	}
}

// worked checks that a command exited 0.
func worked(t *testing.T, r runResult, what string) {
	t.Helper()
	if r.code != 0 {
		t.Errorf("%s: exit %d, stderr %q; want success", what, r.code, r.err)
	}
}

// secretFile makes a root-only (0600) file holding content at its start.
func secretFile(t *testing.T, s *sandbox, name string, content []byte, mode os.FileMode) string {
	t.Helper()
	p := s.file(name, 1<<20)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPeerLeafAccess(t *testing.T) {
	requireRoot(t)
	u := testenv.NewUser(t, "dxsec")
	s := newQuickSandbox(t)
	openToOthers(t, s)
	member := &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{testGid}}
	stranger := &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}

	secretBytes := []byte("root's secret, not the group's")
	secret := secretFile(t, s, "secret.img", secretBytes, 0o600)
	public := secretFile(t, s, "public.img", []byte("anyone may read this"), 0o644)
	mine := s.path("mine")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	own := secretFile(t, s, "mine/own.img", nil, 0o600)
	for _, p := range []string{mine, own} {
		if err := os.Chown(p, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
	}
	// Root's own device over the secret: the daemon uses that leaf.
	s.run("create", "rootdev", "--table", "0 8 linear "+secret+" 0")
	s.startDaemon("--group", fmt.Sprint(testGid), "--no-uevents", "--rescan", "1h")
	sock := s.path("daxstack.sock")

	secretState := testenv.StateOf(t, secret)

	// Item 1: a member of the group names a root-only file.
	s.sub("member over a root-only file", func(t *testing.T) {
		worked(t, s.runAs(member, "create", "e0", "--table", "0 8 zero"), "create e0 by a member")
		sum := s.dbChecksum()
		for _, args := range [][]string{
			{"create", "esc", "--table", "0 8 linear secret.img 0"}, // the exact command
			{"create", "esc", "--table", "0 8 linear " + secret + " 0"},
			{"create", "-r", "esc", "--table", "0 8 linear secret.img 0"},
			{"create", "esc", "--table", "0 16 striped 2 8 " + own + " 0 secret.img 0"},
			{"create", "--concise", "esc,,,ro,0 8 linear " + secret + " 0"},
			{"load", "e0", "--table", "0 8 linear secret.img 0"},
			{"read", secret, "--sector", "0"},
			{"read", "secret.img", "--sector", "0"},
			{"inject", secret, "--sector", "1", "--count", "1"},
		} {
			refused(t, s.runAs(member, args...), "a member: daxstack "+strings.Join(args, " "))
		}
		refused(t, s.runAsIn(member, "overwritten", "write", secret, "--sector", "0"), "a member writes the secret leaf")
		if s.dbChecksum() != sum {
			t.Error("refused commands changed the database")
		}
		if r := s.runAs(member, "read", "esc", "--sector", "0"); r.code != 1 || strings.Contains(r.out, "secret") {
			t.Errorf("read esc: exit %d, stdout %q: the device must not exist", r.code, r.out)
		}
		testenv.SameState(t, secret, secretState, "a member's refused commands")
		if out := s.run("table", "e0"); !strings.Contains(out, "zero") {
			t.Errorf("the refused load changed e0: %q", out)
		}
	})

	// A major:minor reference is checked on its device node: a loop device
	// (root:disk 0660) over the secret.
	s.sub("member over a root-only device node", func(t *testing.T) {
		testenv.NeedCommand(t, "losetup")
		loop := losetup(t, secret, "")
		var st unix.Stat_t
		if err := unix.Stat(loop, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o006 != 0 {
			t.Skipf("%s is mode %o: others may open it", loop, st.Mode&0o777)
		}
		devno := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		sum := s.dbChecksum()
		for _, ref := range []string{devno, loop} {
			refused(t, s.runAs(member, "create", "esc", "--table", "0 8 linear "+ref+" 0"), "a member over "+ref)
		}
		if s.dbChecksum() != sum {
			t.Error("refused commands changed the database")
		}
		// Root may, and the daemon holds it while a table uses it.
		s.run("create", "rootloop", "--table", "0 8 linear "+devno+" 0")
		s.run("remove", "rootloop")
	})

	// Item 2: the socket opened to everyone; a stranger reads reports, not
	// data.
	s.sub("stranger on an open socket", func(t *testing.T) {
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(sock, 0o660)
		for _, args := range [][]string{
			{"read", "rootdev", "--sector", "0"},
			{"read", secret, "--sector", "0"},
			{"read", "e0", "--sector", "0"},
		} {
			r := s.runAs(stranger, args...)
			refused(t, r, "a stranger: daxstack "+strings.Join(args, " "))
			if strings.Contains(r.out, "secret") {
				t.Errorf("a stranger read the secret: %q", r.out)
			}
		}
		refused(t, s.runAsIn(stranger, "overwritten", "write", "rootdev", "--sector", "0"), "a stranger writes rootdev")
		if r := s.runAs(stranger, "table", "rootdev"); r.code != 0 {
			t.Errorf("a stranger's report: exit %d, %s", r.code, r.err)
		}
		testenv.SameState(t, secret, secretState, "a stranger's refused commands")
	})

	// What the group may do: read and write every mapped device, the ones
	// root made included.
	s.sub("member reads a mapped device", func(t *testing.T) {
		r := s.runAs(member, "read", "rootdev", "--sector", "0")
		if r.code != 0 || !bytes.HasPrefix([]byte(r.out), secretBytes) {
			t.Errorf("a member reads rootdev: exit %d, %q, %s", r.code, r.out, r.err)
		}
	})

	// A member's own file: everything works, and the bytes land there.
	s.sub("member's own file", func(t *testing.T) {
		worked(t, s.runAs(member, "create", "m1", "--table", "0 8 linear mine/own.img 0"), "create m1 over own.img (relative)")
		if out := s.run("table", "m1"); !strings.Contains(out, own) {
			t.Errorf("table m1 = %q, want the member's path %s (relative to the member's directory)", out, own)
		}
		worked(t, s.runAsIn(member, "the member's bytes", "write", "m1", "--sector", "0"), "write m1")
		if r := s.runAs(member, "read", "m1", "--sector", "0"); r.code != 0 || !strings.HasPrefix(r.out, "the member's bytes") {
			t.Errorf("read m1: exit %d, %q, %s", r.code, r.out, r.err)
		}
		worked(t, s.runAs(member, "read", own, "--sector", "0"), "read of the member's own leaf")
		s.run("remove", "m1") // closes the leaf: the bytes are in the file
		b, err := os.ReadFile(own)
		if err != nil || !bytes.HasPrefix(b, []byte("the member's bytes")) {
			t.Errorf("own.img starts %q (%v)", b[:min(len(b), 32)], err)
		}
	})

	// A leaf the member may only read backs only a read-only device.
	s.sub("read-only leaf", func(t *testing.T) {
		sum := s.dbChecksum()
		for _, args := range [][]string{
			{"create", "pubrw", "--table", "0 8 linear public.img 0"},
			{"create", "--concise", "pubrw,,,rw,0 8 linear " + public + " 0"},
		} {
			r := s.runAs(member, args...)
			refused(t, r, "a member: daxstack "+strings.Join(args, " "))
			if !strings.Contains(r.err, "read-only") {
				t.Errorf("the refusal does not say the device must be read-only: %q", r.err)
			}
		}
		if s.dbChecksum() != sum {
			t.Error("refused commands changed the database")
		}
		worked(t, s.runAs(member, "create", "-r", "pubro", "--table", "0 8 linear public.img 0"), "create -r pubro")
		if r := s.runAs(member, "read", "pubro", "--sector", "0"); r.code != 0 || !strings.HasPrefix(r.out, "anyone may read") {
			t.Errorf("read pubro: exit %d, %q, %s", r.code, r.out, r.err)
		}
		if r := s.runAsIn(member, "x", "write", "pubro", "--sector", "0"); r.code != 1 || !strings.Contains(r.err, "read-only file system") {
			t.Errorf("write pubro: exit %d, %s; want EROFS", r.code, r.err)
		}
		refused(t, s.runAsIn(member, "x", "write", public, "--sector", "0"), "a member writes the read-only leaf directly")
		// Nor through a writable device over the read-only one.
		r := s.runAs(member, "create", "over", "--table", "0 8 linear pubro 0")
		refused(t, r, "a writable device over pubro")
		worked(t, s.runAs(member, "create", "-r", "over", "--table", "0 8 linear pubro 0"), "a read-only device over pubro")
		// Root may.
		s.run("create", "rootpub", "--table", "0 8 linear "+public+" 0")
	})
}

// TestLeafSwappedAtRestart: a file leaf replaced at its path while the
// daemon was down is lost when the daemon opens the stored table again; the
// file found there is never read nor written.
func TestLeafSwappedAtRestart(t *testing.T) {
	s := newQuickSandbox(t)
	leaf := secretFile(t, s, "leaf.img", []byte("the recorded leaf"), 0o644)
	s.run("create", "top", "--table", "0 8 linear "+leaf+" 0")
	d := s.startDaemon("--no-uevents", "--rescan", "1h")
	if out := s.run("read", "top", "--sector", "0"); !strings.HasPrefix(out, "the recorded leaf") {
		t.Fatalf("read top: %q", out)
	}
	d.stop()
	other := secretFile(t, s, "other.img", []byte("another file"), 0o644)
	if err := os.Rename(other, leaf); err != nil {
		t.Fatal(err)
	}
	swapped := testenv.StateOf(t, leaf)
	s.startDaemon("--no-uevents", "--rescan", "1h")
	if r := s.tryRun("read", "top", "--sector", "0"); r.code == 0 || strings.Contains(r.out, "another file") {
		t.Errorf("read top after the swap: exit %d, %q: the other file was used", r.code, r.out)
	}
	c := s.cmd("write", "top", "--sector", "0")
	c.Stdin = strings.NewReader("must not land")
	if r := s.tryCmd(c); r.code == 0 {
		t.Error("write top after the swap succeeded")
	}
	if out := s.run("ls"); !strings.Contains(out, "top") {
		t.Errorf("ls: %q", out)
	}
	testenv.SameState(t, leaf, swapped, "reads and writes of a swapped leaf")
}

// Item 15: leaves are claimed. A block device a live table of the daemon
// uses cannot be mounted (EBUSY); a table over a mounted block device is
// refused, with and without the daemon.
func TestLeafClaims(t *testing.T) {
	requireRoot(t)
	testenv.NeedCommand(t, "losetup")
	testenv.NeedCommand(t, "mkfs.ext4")
	s := newQuickSandbox(t)
	img := s.file("fs.img", 32<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	loop := losetup(t, img, "")
	mnt := s.path("mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mount := func() error {
		err := unix.Mount(loop, mnt, "ext4", 0, "")
		if err == nil {
			t.Cleanup(func() { unix.Unmount(mnt, 0) })
		}
		return err
	}

	d := s.startDaemon("--no-uevents", "--rescan", "1h")
	s.run("create", "top", "--table", "0 8192 linear "+loop+" 0")
	if err := mount(); err != syscall.EBUSY {
		t.Fatalf("mount of a leaf under a live table: %v, want EBUSY", err)
	}
	s.run("remove", "top") // the last table lets go of it
	if err := mount(); err != nil {
		t.Fatalf("mount once no table uses the leaf: %v", err)
	}

	// Mounted: refused through the daemon and without it, changing nothing.
	sum := s.dbChecksum()
	for _, args := range [][]string{
		{"create", "top", "--table", "0 8192 linear " + loop + " 0"},
		{"--no-daemon", "create", "top", "--table", "0 8192 linear " + loop + " 0"},
	} {
		if args[0] == "--no-daemon" {
			d.stop()
		}
		msg := s.runFail(args...)
		if !strings.Contains(msg, "mounted") || !strings.Contains(msg, mnt) || !strings.Contains(strings.ToLower(msg), "device or resource busy") {
			t.Errorf("daxstack %s: %q; want it refused as mounted on %s (EBUSY)", strings.Join(args, " "), msg, mnt)
		}
	}
	if s.dbChecksum() != sum {
		t.Error("refused creates changed the database")
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	// Without the daemon nothing is held between commands: that is all a
	// process that exits can promise.
	s.run("create", "top", "--table", "0 8192 linear "+loop+" 0")
	if err := mount(); err != nil {
		t.Fatalf("mount between two embedded commands: %v (nothing holds it)", err)
	}
	unix.Unmount(mnt, 0)
}
