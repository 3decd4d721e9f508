package linux

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

func needLoop(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	if _, err := os.Stat(loopControl); err != nil {
		testenv.Unavailable(t, "needs the loop driver: "+err.Error())
	}
}

// attach makes a file of size bytes and a loop device over it, detached
// when t ends.
func attach(t *testing.T, size int64, c LoopConfig) (Loop, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := AttachLoop(f, c)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DetachLoop(l.Path) })
	return l, path
}

func TestAttachLoop(t *testing.T) {
	needLoop(t)
	testenv.NeedCommand(t, "losetup")
	l, path := attach(t, 8<<20, LoopConfig{DirectIO: true, Tag: "daxstack:test/" + strings.Repeat("x", 80)})
	st, err := LoopStatus(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dev != l.Dev || st.Number != l.Number || st.Dev.Major != 7 {
		t.Errorf("status %+v of %+v", st, l)
	}
	if !st.DirectIO || st.ReadOnly || st.Autoclear {
		t.Errorf("flags %+v, want direct I/O only", st)
	}
	if want := ("daxstack:test/" + strings.Repeat("x", 80))[:TagSize]; st.Tag != want {
		t.Errorf("tag %q, want %q", st.Tag, want)
	}
	if st.BackingFile != path {
		t.Errorf("backing file %q, want %q", st.BackingFile, path)
	}
	var fst unix.Stat_t
	if err := unix.Stat(path, &fst); err != nil {
		t.Fatal(err)
	}
	if st.BackingDev != DevOf(fst.Dev) || st.BackingIno != fst.Ino {
		t.Errorf("backing %v/%d, want %v/%d", st.BackingDev, st.BackingIno, DevOf(fst.Dev), fst.Ino)
	}
	out, err := exec.Command("losetup", "-l", "-n", "-O", "DIO,LOG-SEC,RO", l.Path).CombinedOutput()
	if err != nil || strings.Join(strings.Fields(string(out)), " ") != "1 512 0" {
		t.Errorf("losetup -l: %q, %v; want DIO 1, LOG-SEC 512, RO 0", out, err)
	}
	found := false
	all, err := Loops()
	if err != nil {
		t.Fatal(err)
	}
	for _, li := range all {
		if li.Dev == l.Dev {
			found = li.BackingFile == path && li.DirectIO
		}
	}
	if !found {
		t.Errorf("Loops() = %+v, lacks %v over %s", all, l, path)
	}
	if d, err := BlockDevOf(l.Path); err != nil || d != l.Dev {
		t.Errorf("BlockDevOf = %v, %v", d, err)
	}
	if _, err := BlockDevOf(path); !errors.Is(err, syscall.ENOTBLK) {
		t.Errorf("BlockDevOf(regular file) = %v, want ENOTBLK", err)
	}
}

func TestSetCapacityAndReadOnly(t *testing.T) {
	needLoop(t)
	l, path := attach(t, 4<<20, LoopConfig{})
	if n, err := Size(l.Path); err != nil || n != 4<<20 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if err := os.Truncate(path, 12<<20); err != nil {
		t.Fatal(err)
	}
	if n, _ := Size(l.Path); n != 4<<20 {
		t.Errorf("size changed before LOOP_SET_CAPACITY: %d", n)
	}
	if err := SetCapacity(l.Path); err != nil {
		t.Fatal(err)
	}
	if n, err := Size(l.Path); err != nil || n != 12<<20 {
		t.Errorf("Size after SetCapacity = %d, %v", n, err)
	}

	if err := SetReadOnly(l.Path, true); err != nil {
		t.Fatal(err)
	}
	if ro, err := ReadOnly(l.Path); err != nil || !ro {
		t.Errorf("ReadOnly = %v, %v", ro, err)
	}
	f, err := os.OpenFile(l.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(make([]byte, 512))
	f.Close()
	if !errors.Is(err, syscall.EPERM) {
		t.Errorf("write to a read-only loop: %v, want EPERM", err)
	}
	if err := SetReadOnly(l.Path, false); err != nil {
		t.Fatal(err)
	}
	f, err = os.OpenFile(l.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 512)); err != nil {
		t.Errorf("write after read-write again: %v", err)
	}
}

func TestExclusive(t *testing.T) {
	needLoop(t)
	l, _ := attach(t, 4<<20, LoopConfig{})
	if err := ProbeExclusive(l.Path); err != nil {
		t.Fatalf("probe of a free device: %v", err)
	}
	f, err := OpenExclusive(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ProbeExclusive(l.Path); !errors.Is(err, ErrHeld) || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("probe of a held device: %v, want ErrHeld", err)
	}
	if _, err := OpenExclusive(l.Path); !errors.Is(err, ErrHeld) {
		t.Errorf("second exclusive open: %v, want ErrHeld", err)
	}
	// A plain open is not exclusive and is not seen.
	g, err := os.Open(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	f.Close()
	if err := ProbeExclusive(l.Path); err != nil {
		t.Errorf("probe after the holder closed: %v", err)
	}
	if h, err := Holders(l.Dev); err != nil || len(h) != 0 {
		t.Errorf("Holders = %v, %v", h, err)
	}
}

func TestDetachLoop(t *testing.T) {
	needLoop(t)
	t.Run("no opener: at once", func(t *testing.T) {
		l, _ := attach(t, 4<<20, LoopConfig{})
		deferred, err := DetachLoop(l.Path)
		if err != nil || deferred {
			t.Fatalf("DetachLoop = %v, %v", deferred, err)
		}
		if _, err := LoopStatus(l.Path); !errors.Is(err, ErrNotAttached) {
			t.Errorf("status after detach: %v, want ErrNotAttached", err)
		}
		if deferred, err := DetachLoop(l.Path); err != nil || deferred {
			t.Errorf("second DetachLoop = %v, %v", deferred, err)
		}
	})
	t.Run("held open: at its last close", func(t *testing.T) {
		l, _ := attach(t, 4<<20, LoopConfig{})
		g, err := os.Open(l.Path)
		if err != nil {
			t.Fatal(err)
		}
		deferred, err := DetachLoop(l.Path)
		if err != nil || !deferred {
			g.Close()
			t.Fatalf("DetachLoop with an opener = %v, %v; want deferred", deferred, err)
		}
		st, err := LoopStatus(l.Path)
		if err != nil || !st.Autoclear {
			t.Errorf("status while deferred: %+v, %v; want autoclear", st, err)
		}
		g.Close()
		if _, err := LoopStatus(l.Path); !errors.Is(err, ErrNotAttached) {
			t.Errorf("status after the last close: %v, want ErrNotAttached", err)
		}
	})
}

func TestFreezeThaw(t *testing.T) {
	needLoop(t)
	testenv.NeedCommand(t, "mkfs.ext4")
	l, _ := attach(t, 64<<20, LoopConfig{})
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", l.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	if err := unix.Mount(l.Path, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Thaw(mnt); unix.Unmount(mnt, 0) })
	ms, err := MountsOf(l.Dev)
	if err != nil || len(ms) != 1 || ms[0].Point != mnt || ms[0].FSType != "ext4" {
		t.Fatalf("MountsOf(%v) = %+v, %v", l.Dev, ms, err)
	}
	if err := Freeze(mnt); err != nil {
		t.Fatal(err)
	}
	if err := Freeze(mnt); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("second freeze: %v, want EBUSY", err)
	}
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(filepath.Join(mnt, "f"), bytes.Repeat([]byte("x"), 4096), 0o600) }()
	select {
	case err := <-done:
		t.Fatalf("a write to a frozen filesystem returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := Thaw(mnt); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("write after thaw: %v", err)
	}
	if err := Thaw(mnt); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("thaw of a thawed filesystem: %v, want EINVAL", err)
	}
}
