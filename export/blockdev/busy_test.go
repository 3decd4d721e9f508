package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/linux"
)

func busyErr(t *testing.T, err error) Usage {
	t.Helper()
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("got %v, want a BusyError", err)
	}
	return be.Usage
}

// What makes a device busy, as dmsetup would see it, and what does not.
func TestBusy(t *testing.T) {
	r := newRig(t)
	_, x := r.add("a", 64<<20, false)
	dev := x.Links[0]

	t.Run("mounted", func(t *testing.T) {
		run(t, "mkfs.ext4", "-q", "-F", dev)
		mnt := mountFS(t, dev, "ext4", 0)
		u := busyErr(t, second(r.m.Remove("a", false)))
		if len(u.Mounts) != 1 || u.Mounts[0] != mnt || !u.InUse() {
			t.Errorf("usage %+v, want mounted on %s", u, mnt)
		}
		umount(t, mnt)
	})
	t.Run("exclusive opener", func(t *testing.T) {
		f, err := linux.OpenExclusive(dev)
		if err != nil {
			t.Fatal(err)
		}
		u := busyErr(t, second(r.m.Remove("a", false)))
		f.Close()
		if !u.Exclusive || len(u.Mounts) != 0 {
			t.Errorf("usage %+v, want exclusive", u)
		}
	})
	t.Run("device file opener", func(t *testing.T) {
		f, err := os.Open(r.fs.Path("a"))
		if err != nil {
			t.Fatal(err)
		}
		u := busyErr(t, second(r.m.Remove("a", false)))
		f.Close()
		if u.FileUsers != 1 {
			t.Errorf("usage %+v, want one file user", u)
		}
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if u, _ := r.m.Usage("a"); !u.InUse() {
				break
			}
			if time.Now().After(end) {
				t.Fatal("the file user did not go away")
			}
		}
	})
	// The refusals changed nothing.
	if _, err := linux.LoopStatus(x.Loop.Path); err != nil {
		t.Fatalf("loop after refusals: %v", err)
	}
	for _, l := range x.Links {
		if readlink(t, l) != x.Loop.Path {
			t.Errorf("link %s moved", l)
		}
	}

	// An opener without O_EXCL is invisible: the removal goes on, and the
	// loop detaches when it closes.
	plain, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := r.m.Remove("a", false)
	if err != nil || !rm.Deferred {
		plain.Close()
		t.Fatalf("Remove with a plain opener = %+v, %v; want deferred", rm, err)
	}
	if _, err := plain.ReadAt(make([]byte, 512), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read through the deferred loop: %v, want EIO", err)
	}
	plain.Close()
	if _, err := linux.LoopStatus(x.Loop.Path); !errors.Is(err, linux.ErrNotAttached) {
		t.Errorf("loop after its last close: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestForcedRemoveWhileMounted(t *testing.T) {
	r := newRig(t)
	_, x := r.add("a", 64<<20, false)
	run(t, "mkfs.ext4", "-q", "-F", x.Links[0])
	mnt := mountFS(t, x.Links[0], "ext4", 0)
	rm, err := r.m.Remove("a", true)
	if err != nil || !rm.Deferred {
		t.Fatalf("forced Remove = %+v, %v", rm, err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644)
	if err == nil {
		_, err = f.Write(make([]byte, 4096))
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("I/O on a filesystem whose device was removed: %v, want EIO", err)
	}
	umount(t, mnt)
	if _, err := linux.LoopStatus(x.Loop.Path); !errors.Is(err, linux.ErrNotAttached) {
		t.Errorf("loop after unmount: %v", err)
	}
}

// A claimed device can't be mounted; its claim is not a use.
func TestClaim(t *testing.T) {
	r := newRig(t)
	_, x := r.add("a", 64<<20, false)
	run(t, "mkfs.ext4", "-q", "-F", x.Links[0])
	if err := r.m.Claim("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Claim("a"); err != nil {
		t.Errorf("second Claim: %v", err)
	}
	mnt := t.TempDir()
	if err := unix.Mount(x.Links[0], mnt, "ext4", 0, ""); !errors.Is(err, syscall.EBUSY) {
		unix.Unmount(mnt, 0)
		t.Errorf("mount of a claimed device: %v, want EBUSY", err)
	}
	u, err := r.m.Usage("a")
	if err != nil || !u.Claimed || u.InUse() {
		t.Errorf("usage of a claimed device %+v, %v", u, err)
	}
	if err := r.m.Unclaim("a"); err != nil {
		t.Fatal(err)
	}
	mnt = mountFS(t, x.Links[0], "ext4", 0)
	err = r.m.Claim("a")
	if u := busyErr(t, err); len(u.Mounts) != 1 {
		t.Errorf("claim of a mounted device: %+v", u)
	}
	umount(t, mnt)
}

// A suspend that locks the filesystem: Freeze writes it back and stops its
// writers, the device is suspended with nothing in flight, and after
// resume and Thaw the writers go on; the filesystem is clean.
func TestFreezeAroundSuspend(t *testing.T) {
	r := newRig(t)
	d, x := r.add("a", 64<<20, false)
	run(t, "mkfs.ext4", "-q", "-F", x.Links[0])
	mnt := mountFS(t, x.Links[0], "ext4", 0)

	stop := make(chan struct{})
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(mnt, fmt.Sprintf("f%d", n%50))
			if err := os.WriteFile(p, make([]byte, 16<<10), 0o644); err != nil {
				return
			}
			n++
		}
	}()
	time.Sleep(100 * time.Millisecond)
	p, err := r.m.Freeze("a")
	if err != nil || p != mnt {
		t.Fatalf("Freeze = %q, %v; want %s", p, err, mnt)
	}
	d.Suspend()
	before := d.Counts()
	time.Sleep(300 * time.Millisecond)
	if c := d.Counts(); c != before {
		t.Errorf("I/O reached a frozen, suspended device: %+v -> %+v", before, c)
	}
	d.Resume()
	if err := r.m.Thaw("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Thaw("a"); err != nil {
		t.Errorf("second Thaw: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	if n := <-wrote; n == 0 {
		t.Error("the writer wrote nothing")
	}
	umount(t, mnt)
	run(t, "fsck.ext4", "-f", "-n", x.Links[0])
	if p, err := r.m.Freeze("a"); err != nil || p != "" {
		t.Errorf("Freeze with nothing mounted = %q, %v", p, err)
	}
}
