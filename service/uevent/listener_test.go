package uevent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

// testSubsystem is the SUBSYSTEM of the uevents these tests make up, so
// that listeners elsewhere on the machine (which filter on "block" or
// "dax") ignore them.
const testSubsystem = "daxstacktest"

// eventWait is how long a test waits for a uevent the kernel has already
// queued (or is about to).
const eventWait = time.Second

func listen(t *testing.T, o Options) *Listener {
	t.Helper()
	l, err := Listen(o)
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("netlink uevent socket: %v", err))
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// nextWithin is Next with a timeout.
func nextWithin(l *Listener, d time.Duration) (Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.Next(ctx)
}

// waitFor returns the first event that match accepts, failing t if none
// comes within eventWait.
func waitFor(t *testing.T, l *Listener, what string, match func(Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	for {
		ev, err := l.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(ev) {
			return ev
		}
	}
}

// testPayload is a kernel-format uevent for a made-up device of
// testSubsystem, with extra "KEY=VALUE" properties.
func testPayload(name string, extra ...string) []byte {
	devpath := "/devices/virtual/" + testSubsystem + "/" + name
	var b strings.Builder
	b.WriteString("change@" + devpath + "\x00")
	for _, p := range append([]string{"ACTION=change", "DEVPATH=" + devpath, "SUBSYSTEM=" + testSubsystem}, extra...) {
		b.WriteString(p + "\x00")
	}
	return []byte(b.String())
}

// udevMessage wraps properties in the libudev header, as udevd sends
// them: prefix, magic (network order), header size and properties offset
// and length (host order), four filter words left zero.
func udevMessage(props ...string) []byte {
	body := strings.Join(props, "\x00") + "\x00"
	msg := make([]byte, udevHeaderLen, udevHeaderLen+len(body))
	copy(msg, "libudev\x00")
	binary.BigEndian.PutUint32(msg[8:], 0xfeedcafe)
	binary.NativeEndian.PutUint32(msg[12:], udevHeaderLen)
	binary.NativeEndian.PutUint32(msg[16:], udevHeaderLen)
	binary.NativeEndian.PutUint32(msg[20:], uint32(len(body)))
	return append(msg, body...)
}

func TestCloseUnblocksNext(t *testing.T) {
	l := listen(t, Options{Subsystems: []string{"daxstack-nothing"}})
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, err := l.Next(context.Background())
		done <- result{err, time.Now()}
	}()
	time.Sleep(50 * time.Millisecond) // let Next block
	select {
	case r := <-done:
		t.Fatalf("Next returned before Close: %v", r.err)
	default:
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 { // concurrent and repeated Close
		wg.Go(func() { l.Close() })
	}
	wg.Wait()
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, os.ErrClosed) {
			t.Errorf("Next after Close = %v, want ErrClosed", r.err)
		}
		t.Logf("Next returned %v after Close", r.at.Sub(start))
	case <-time.After(time.Second):
		t.Fatal("Next still blocked 1s after Close")
	}
	if _, err := l.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next on a closed Listener = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestNextContext(t *testing.T) {
	l := listen(t, Options{Subsystems: []string{"daxstack-nothing"}})
	start := time.Now()
	if _, err := nextWithin(l, 30*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with a timeout = %v, want DeadlineExceeded", err)
	}
	t.Logf("timed out after %v", time.Since(start))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context = %v, want Canceled", err)
	}
	// A cancellation while blocked, from another goroutine.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next cancelled while blocked = %v, want Canceled", err)
	}
	// The deadline used to wake the read must not outlive the call.
	if os.Geteuid() == 0 {
		l2 := listen(t, Options{Subsystems: []string{testSubsystem}})
		if _, err := nextWithin(l2, 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		testenv.NewUeventInjector(t, eventWait).Inject(testPayload("ctx"))
		ev, err := l2.Next(context.Background())
		if err != nil || ev.DevPath != "/devices/virtual/"+testSubsystem+"/ctx" {
			t.Fatalf("Next after a timed-out Next = %v, %v", ev, err)
		}
	}
}

func TestListenOptions(t *testing.T) {
	if _, err := Listen(Options{Mode: Mode(7)}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Listen with Mode(7) = %v, want EINVAL", err)
	}
	l := listen(t, Options{})
	rmemMax, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip(err)
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(rmemMax)))
	t.Logf("SO_RCVBUF = %d (asked %d, rmem_max %d, root %v)", l.RcvBuf(), DefaultRcvBuf, max, os.Geteuid() == 0)
	switch {
	case os.Geteuid() == 0 && l.RcvBuf() < 2*DefaultRcvBuf:
		// SO_RCVBUFFORCE ignores rmem_max; the kernel doubles the value.
		t.Errorf("as root the buffer is %d, want at least %d (SO_RCVBUFFORCE)", l.RcvBuf(), 2*DefaultRcvBuf)
	case os.Geteuid() != 0 && l.RcvBuf() < min(2*DefaultRcvBuf, 2*max):
		t.Errorf("buffer is %d, want at least %d (SO_RCVBUF capped by rmem_max)", l.RcvBuf(), min(2*DefaultRcvBuf, 2*max))
	}
}

// TestLoopDevice attaches a file to a loop device and detaches it again,
// and checks the kernel's uevents for it.
func TestLoopDevice(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "losetup")
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	l := listen(t, Options{Subsystems: []string{"block"}})

	attach := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("losetup", append(args, "--show", img)...).CombinedOutput()
		if err != nil {
			testenv.Unavailable(t, fmt.Sprintf("losetup %s: %v: %s", strings.Join(args, " "), err, out))
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		return dev
	}
	detach := func(dev string) {
		t.Helper()
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Fatalf("losetup -d %s: %v: %s", dev, err, out)
		}
	}
	// checkDev compares an event with what sysfs and /dev say, which
	// this package does not read.
	checkDev := func(ev Event, name string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+name, &st); err != nil {
			t.Fatal(err)
		}
		if ev.Subsystem != "block" || ev.DevType != "disk" || ev.DevPath != "/devices/virtual/block/"+name ||
			ev.Major != unix.Major(st.Rdev) || ev.Minor != unix.Minor(st.Rdev) || ev.Seq == 0 {
			t.Errorf("event %v does not describe /dev/%s (%d:%d)", ev, name, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	sysDiskseq := func(name string) uint64 {
		t.Helper()
		b, err := os.ReadFile("/sys/block/" + name + "/diskseq")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	dev := attach("-f")
	name := filepath.Base(dev)
	ev := waitFor(t, l, "the attach of "+name, func(ev Event) bool {
		return ev.DevName == name && (ev.Action == "add" || ev.Action == "change")
	})
	t.Logf("attach: %v", ev)
	checkDev(ev, name)
	first := ev.DiskSeq
	if want := sysDiskseq(name); first != want {
		t.Errorf("attach event DISKSEQ %d, /sys/block/%s/diskseq says %d", first, name, want)
	}

	detach(dev)
	ev = waitFor(t, l, "a media change on "+name, func(ev Event) bool {
		return ev.DevName == name && ev.Action == "change" && ev.MediaChange()
	})
	t.Logf("detach: %v", ev)
	checkDev(ev, name)
	if ev.DiskSeq == 0 {
		t.Errorf("detach event without DISKSEQ: %v", ev)
	}

	// Attach again, to the same device if it is still free.
	cmd := exec.Command("losetup", dev, img)
	if err := cmd.Run(); err == nil {
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	} else {
		dev = attach("-f")
		name = filepath.Base(dev)
	}
	ev = waitFor(t, l, "the re-attach of "+name, func(ev Event) bool {
		return ev.DevName == name && ev.Action == "change" && !ev.MediaChange() && ev.DiskSeq > first
	})
	t.Logf("re-attach: %v", ev)
	checkDev(ev, name)
	if want := sysDiskseq(name); ev.DiskSeq != want {
		t.Errorf("re-attach event DISKSEQ %d, /sys/block/%s/diskseq says %d", ev.DiskSeq, name, want)
	}
}

// TestKernelValueWithEquals has the kernel send a uevent with '=' in a
// value, which go-udev refuses, and checks it is delivered.
func TestKernelValueWithEquals(t *testing.T) {
	testenv.NeedRoot(t)
	l := listen(t, Options{Subsystems: []string{testSubsystem}})
	testenv.NewUeventInjector(t, eventWait).Inject(testPayload("dm-3", "DM_NAME=vg=1", "DM_UUID=", "MAJOR=253", "MINOR=3", "DEVNAME=dm-3"))
	ev := waitFor(t, l, "the injected uevent", func(Event) bool { return true })
	if ev.Env["DM_NAME"] != "vg=1" || ev.Major != 253 || ev.Minor != 3 || ev.DevName != "dm-3" || ev.Seq == 0 {
		t.Errorf("got %v %v", ev, ev.Env)
	}
	if s := l.Stats(); s.Fallback != 1 || s.Delivered != 1 {
		t.Errorf("stats %+v, want one event parsed by the fallback", s)
	}
}

// TestForgedKernelEvent sends a kernel-format uevent to group 1 from user
// space: a Kernel listener must not take it for the kernel's.
func TestForgedKernelEvent(t *testing.T) {
	testenv.NeedRoot(t)
	l := listen(t, Options{Subsystems: []string{testSubsystem}})
	u := testenv.NewUeventInjector(t, eventWait)
	u.Broadcast(1, testPayload("forged", "FORGED=1"))
	u.Inject(testPayload("real"))
	ev := waitFor(t, l, "the injected uevent", func(Event) bool { return true })
	if ev.DevPath != "/devices/virtual/"+testSubsystem+"/real" {
		t.Fatalf("first event delivered is %v %v, want the kernel's", ev, ev.Env)
	}
	if s := l.Stats(); s.Rejected < 1 {
		t.Errorf("stats %+v, want the forged message rejected", s)
	}
}

// TestUdevMode plays udevd: messages with the libudev header sent to
// group 2 by root are delivered, others are not.
func TestUdevMode(t *testing.T) {
	testenv.NeedRoot(t)
	l := listen(t, Options{Mode: Udev, Subsystems: []string{testSubsystem}})
	u := testenv.NewUeventInjector(t, eventWait)
	devpath := "/devices/virtual/" + testSubsystem + "/u0"
	// Not udevd's format: rejected.
	u.Broadcast(2, testPayload("kernel-format"))
	u.Broadcast(2, udevMessage("ACTION=add", "DEVPATH="+devpath, "SUBSYSTEM="+testSubsystem,
		"DEVNAME=/dev/u0", "MAJOR=250", "MINOR=4", "SEQNUM=77", "ID_FS_LABEL=x=y"))
	ev := waitFor(t, l, "udevd's event", func(Event) bool { return true })
	if ev.Action != "add" || ev.DevPath != devpath || ev.DevName != "u0" || ev.Major != 250 || ev.Minor != 4 ||
		ev.Seq != 77 || ev.Env["ID_FS_LABEL"] != "x=y" || ev.Env["DEVNAME"] != "/dev/u0" {
		t.Errorf("got %v %v", ev, ev.Env)
	}
	if s := l.Stats(); s.Rejected != 1 || s.Fallback != 1 {
		t.Errorf("stats %+v, want the kernel-format message rejected and one fallback parse", s)
	}
}

// TestOverrun fills a tiny receive buffer: Next reports ErrOverrun and
// then goes on delivering events.
func TestOverrun(t *testing.T) {
	testenv.NeedRoot(t)
	l := listen(t, Options{Subsystems: []string{testSubsystem}, RcvBuf: 1})
	if l.RcvBuf() > 16<<10 {
		t.Fatalf("receive buffer is %d bytes; the test needs a tiny one", l.RcvBuf())
	}
	u := testenv.NewUeventInjector(t, eventWait)
	const n = 200
	for i := range n {
		u.Inject(testPayload(fmt.Sprintf("flood%d", i)))
	}
	_, err := nextWithin(l, eventWait)
	if !errors.Is(err, ErrOverrun) || !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("Next after %d events into a %d-byte buffer = %v, want ErrOverrun", n, l.RcvBuf(), err)
	}
	// Drain what the buffer kept, then an event sent now must arrive.
	// Other uevents on the machine can overflow the tiny buffer again;
	// try a few times.
	for attempt := range 10 {
		for drained := false; !drained; {
			_, err := nextWithin(l, 100*time.Millisecond)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				drained = true
			case err != nil && !errors.Is(err, ErrOverrun):
				t.Fatalf("Next after an overrun: %v", err)
			}
		}
		marker := fmt.Sprintf("after%d", attempt)
		u.Inject(testPayload(marker))
		for {
			ev, err := nextWithin(l, eventWait)
			if errors.Is(err, ErrOverrun) || errors.Is(err, context.DeadlineExceeded) {
				t.Logf("attempt %d: %v", attempt, err)
				break
			}
			if err != nil {
				t.Fatalf("Next after an overrun: %v", err)
			}
			if strings.HasSuffix(ev.DevPath, "/"+marker) {
				s := l.Stats()
				t.Logf("buffer %d bytes; stats %+v", l.RcvBuf(), s)
				if s.Overruns < 1 || s.Delivered >= n {
					t.Errorf("stats %+v: want an overrun and fewer than %d delivered", s, n)
				}
				return
			}
		}
	}
	t.Fatal("no event delivered after the overrun")
}
