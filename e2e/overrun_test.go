package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
)

// madeUpUevent is a "change" uevent for a device of a subsystem nobody
// listens to.
func madeUpUevent(name string) []byte {
	devpath := "/devices/virtual/daxstacke2e/" + name
	return []byte("change@" + devpath + "\x00ACTION=change\x00DEVPATH=" + devpath + "\x00SUBSYSTEM=daxstacke2e\x00")
}

// TestDaemonUeventOverrun: with a tiny uevent buffer, a burst of uevents
// hides a loop device's detach from the daemon; the overrun makes it
// rescan everything, and the lost event arrives within a second or two,
// not at the periodic rescan an hour away. The daemon is stopped
// (SIGSTOP) during the burst so that the buffer is surely full when the
// detach's uevent comes; its log must say the overrun found the loss.
func TestDaemonUeventOverrun(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newQuickSandbox(t)
	const leafSectors = 16384
	a := s.file("a.img", leafSectors*512)
	b := losetup(t, s.file("b.img", leafSectors*512), "")
	s.run("create", "top", "--table", fmt.Sprintf("0 %d linear %s 0\n%d %d linear %s 0", leafSectors, a, leafSectors, leafSectors, b))
	d := s.startDaemon("--rescan", "1h", "--uevent-rcvbuf", "1", "--no-hold") // a held loop device cannot be detached
	w := s.watch("top")
	k := testenv.NewUeventInjector(t, 2*time.Second)
	time.Sleep(300 * time.Millisecond) // the daemon is blocked reading uevents

	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		k.Inject(madeUpUevent(fmt.Sprintf("burst%d", i)))
	}
	detach(t, b)
	for i := range 20 {
		k.Inject(madeUpUevent(fmt.Sprintf("after%d", i)))
	}
	continued := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	lost := w.wait(t, 5*time.Second, "lost", func(e event) bool { return e.Kind == "lost" && e.Device == "top" })
	if took := time.Since(continued); took > 2*time.Second {
		t.Errorf("lost arrived %v after the daemon continued", took)
	}
	got := sectors(lost.Ranges)
	for sec := uint64(0); sec < 2*leafSectors; sec++ {
		if got[sec] != (sec >= leafSectors) {
			t.Fatalf("lost on top: sector %d in ranges = %v; b backs sectors %d-%d", sec, got[sec], leafSectors, 2*leafSectors-1)
		}
	}
	// Which rescan found the loss: the overrun's, not the detach's own
	// uevent (dropped) nor the periodic one.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(daemonLogs(d), "lost (uevent overrun)") {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's log does not say the overrun found the loss:\n%s", daemonLogs(d))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
