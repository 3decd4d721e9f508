package e2e

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kernelUevents has the kernel broadcast made-up uevents (of a subsystem
// nobody listens to) to every uevent listener, as it does its own: a
// netlink message to the kernel (port 0) whose body is a uevent, which
// Linux 4.18+ lets CAP_SYS_ADMIN send. Each is acknowledged.
type kernelUevents struct {
	t  *testing.T
	fd int
}

func newKernelUevents(t *testing.T) *kernelUevents {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatalf("netlink socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("netlink bind: %v", err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &kernelUevents{t: t, fd: fd}
}

// send has the kernel broadcast one "change" uevent for a made-up device.
func (k *kernelUevents) send(name string) {
	k.t.Helper()
	devpath := "/devices/virtual/daxstacke2e/" + name
	body := "change@" + devpath + "\x00ACTION=change\x00DEVPATH=" + devpath + "\x00SUBSYSTEM=daxstacke2e\x00"
	msg := make([]byte, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_MIN_TYPE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	copy(msg[unix.NLMSG_HDRLEN:], body)
	if err := unix.Sendto(k.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		k.t.Fatalf("inject uevent: %v", err)
	}
	ack := make([]byte, 4096)
	n, _, err := unix.Recvfrom(k.fd, ack, 0)
	if err != nil {
		k.t.Fatalf("inject uevent: no acknowledgement: %v", err)
	}
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(ack[4:]) != unix.NLMSG_ERROR {
		k.t.Fatalf("inject uevent: unexpected reply %q", ack[:n])
	}
	if e := int32(binary.NativeEndian.Uint32(ack[unix.NLMSG_HDRLEN:])); e != 0 {
		k.t.Fatalf("inject uevent: %v", unix.Errno(-e))
	}
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
	d := s.startDaemon("--rescan", "1h", "--uevent-rcvbuf", "1")
	w := s.watch("top")
	k := newKernelUevents(t)
	time.Sleep(300 * time.Millisecond) // the daemon is blocked reading uevents

	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		k.send(fmt.Sprintf("burst%d", i))
	}
	detach(t, b)
	for i := range 20 {
		k.send(fmt.Sprintf("after%d", i))
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
