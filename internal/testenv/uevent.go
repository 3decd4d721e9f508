package testenv

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// UeventInjector has the kernel broadcast made-up uevents to every uevent
// listener exactly as it broadcasts its own. This is the kernel's uevent
// injection (lib/kobject_uevent.c, uevent_net_rcv; Linux 4.18+, needs
// CAP_SYS_ADMIN): a netlink message to port 0 whose body is a uevent; the
// kernel appends SEQNUM and sends it to group 1 from port 0. Each message
// asks for an acknowledgement, which Inject checks.
type UeventInjector struct {
	t  testing.TB
	fd int
}

// NewUeventInjector opens the socket (closed when t ends); wait bounds how
// long Inject waits for each acknowledgement.
func NewUeventInjector(t testing.TB, wait time.Duration) *UeventInjector {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatalf("netlink socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("netlink bind: %v", err)
	}
	tv := unix.NsecToTimeval(int64(wait))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &UeventInjector{t: t, fd: fd}
}

// Inject has the kernel broadcast payload ("ACTION@DEVPATH\0KEY=VALUE\0…")
// as a uevent; a refusal or a missing acknowledgement fails the test.
func (u *UeventInjector) Inject(payload []byte) {
	u.t.Helper()
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_MIN_TYPE) // anything from here is a request
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	if err := unix.Sendto(u.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		u.t.Fatalf("inject uevent: %v", err)
	}
	ack := make([]byte, 4096)
	n, _, err := unix.Recvfrom(u.fd, ack, 0)
	if err != nil {
		u.t.Fatalf("inject uevent: reading the acknowledgement: %v", err)
	}
	// struct nlmsghdr, then struct nlmsgerr's int error.
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(ack[4:]) != unix.NLMSG_ERROR {
		u.t.Fatalf("inject uevent: unexpected reply %q", ack[:n])
	}
	if errno := int32(binary.NativeEndian.Uint32(ack[unix.NLMSG_HDRLEN:])); errno != 0 {
		u.t.Fatalf("inject uevent: kernel says %v", unix.Errno(-errno))
	}
}

// Broadcast sends payload to uevent multicast group from user space, the
// way udevd sends to group 2 (and a forger to group 1).
func (u *UeventInjector) Broadcast(group uint32, payload []byte) {
	u.t.Helper()
	if err := unix.Sendto(u.fd, payload, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: group}); err != nil {
		u.t.Fatalf("send to group %d: %v", group, err)
	}
}
