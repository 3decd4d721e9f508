package dax_test

// Exclusive claims of block-device leaves (#10 item 15), on real loop
// devices with a real ext4 on them.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/testenv"
)

// ext4Loop makes a 16 MiB file with an ext4 on it, attached to a loop
// device.
func ext4Loop(t *testing.T) (node, file string) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "mkfs.ext4")
	file = filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", file).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return dax.NewLoop(t, file), file
}

// mount mounts the ext4 on node on a new directory, and unmounts it at
// cleanup if the test did not.
func mount(t *testing.T, node string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	err := unix.Mount(node, dir, "ext4", 0, "")
	if err == nil {
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	return dir, err
}

// TestClaimHold is fstests' generic/741: a block device under a live
// table cannot be mounted (EBUSY), nor opened exclusively by anyone else,
// while daxstack's own I/O to it goes on; after Close it can be mounted.
func TestClaimHold(t *testing.T) {
	node, _ := ext4Loop(t)
	o := dax.Opener{Claim: dax.ClaimHold}
	l, err := o.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Claimed() {
		t.Fatal("the leaf does not hold its claim")
	}
	if _, err := mount(t, node); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("mount of a held leaf: %v; want EBUSY", err)
	}
	if fd, err := unix.Open(node, unix.O_RDONLY|unix.O_EXCL, 0); err != unix.EBUSY {
		if err == nil {
			unix.Close(fd)
		}
		t.Fatalf("another O_EXCL open: %v; want EBUSY", err)
	}
	// Our own I/O is not hindered, mapped and O_DIRECT alike.
	buf := bytes.Repeat([]byte("held"), 1024)
	if _, err := l.WriteAt(buf, 8<<20); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(buf))
	if _, err := l.ReadAt(back, 8<<20); err != nil || !bytes.Equal(back, buf) {
		t.Fatalf("read back: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// A second opener in this process shares the claim: the engine
	// probes leaves it holds.
	again, err := o.Open(node)
	if err != nil {
		t.Fatalf("second open by the holder: %v", err)
	}
	check := dax.Opener{Claim: dax.ClaimCheck}
	if l3, err := check.Open(node); err != nil {
		t.Fatalf("a check by the holder's process: %v", err)
	} else {
		l3.Close()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mount(t, node); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("mount with one of two shares closed: %v; want EBUSY", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	// Released, exactly: it mounts now.
	dir, err := mount(t, node)
	if err != nil {
		t.Fatalf("mount after the last Close: %v", err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
}

// TestClaimRefusesMounted: a mounted block device (or one whose
// partition is mounted) is refused as a leaf, naming the mount point;
// one another opener holds exclusively is refused too; without Claim the
// old behaviour stays.
func TestClaimRefusesMounted(t *testing.T) {
	node, _ := ext4Loop(t)
	dir, err := mount(t, node)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []dax.ClaimMode{dax.ClaimCheck, dax.ClaimHold} {
		o := dax.Opener{Claim: mode}
		l, err := o.Open(node)
		if err == nil {
			l.Close()
			t.Fatalf("mode %d: a mounted device opened as a leaf", mode)
		}
		var ce *dax.ClaimError
		if !errors.As(err, &ce) || !errors.Is(err, dax.ErrMounted) || !errors.Is(err, syscall.EBUSY) ||
			len(ce.Mounts) != 1 || ce.Mounts[0] != dir || !strings.Contains(err.Error(), dir) {
			t.Fatalf("mode %d: %v; want ErrMounted naming %s", mode, err, dir)
		}
		t.Log(err)
	}
	var plain dax.Opener
	l, err := plain.Open(node)
	if err != nil {
		t.Fatalf("ClaimNone: %v", err)
	}
	l.Close()
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}

	// Held, not mounted.
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := dax.Opener{Claim: dax.ClaimCheck}
	if l, err := o.Open(node); !errors.Is(err, dax.ErrHeld) || !errors.Is(err, syscall.EBUSY) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("a device held by another opener: %v; want ErrHeld", err)
	}
	unix.Close(fd)
	// ClaimCheck holds nothing: a mount works after it.
	l, err = o.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Claimed() {
		t.Error("ClaimCheck holds a claim")
	}
	dir, err = mount(t, node)
	if err != nil {
		t.Fatalf("mount after a check: %v", err)
	}
	unix.Unmount(dir, 0)
}

// TestClaimFilesUnaffected: files and other leaves are not claimed.
func TestClaimFilesUnaffected(t *testing.T) {
	o := dax.Opener{Claim: dax.ClaimHold}
	l := openFile(t, 4096, 'f', &o)
	if l.Claimed() {
		t.Error("a file leaf holds a claim")
	}
}

// TestClaimLost: a leaf marked lost lets go of its device (losetup -d and
// ndctl destroy-namespace could not finish while it held it); marked back,
// it holds it again.
func TestClaimLost(t *testing.T) {
	node, _ := ext4Loop(t)
	l, err := (&dax.Opener{Claim: dax.ClaimHold}).Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.SetLost(true)
	if l.Claimed() {
		t.Fatal("a lost leaf still holds its claim")
	}
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatalf("O_EXCL open of a lost leaf's device: %v", err)
	}
	unix.Close(fd)
	l.SetLost(false)
	if !l.Claimed() {
		t.Fatal("a leaf back from lost does not hold its claim again")
	}
	if _, err := mount(t, node); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("mount of a leaf back from lost: %v; want EBUSY", err)
	}
}
