package uevent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pilebones/go-udev/netlink"
	"golang.org/x/sys/unix"
)

// Mode selects which uevents a Listener receives.
type Mode int

const (
	// Kernel receives the kernel's own uevents (netlink multicast group
	// 1). This is the default: it needs no udevd and nothing is lost to
	// udev rules, but a /dev node may not exist yet when an add arrives.
	Kernel Mode = iota
	// Udev receives the events udevd re-broadcasts once its rules have
	// run (group 2), with the libudev header and udev's properties. There
	// are none if udevd is not running.
	Udev
)

// String returns "kernel" or "udev".
func (m Mode) String() string {
	switch m {
	case Kernel:
		return "kernel"
	case Udev:
		return "udev"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultRcvBuf is the socket receive buffer a Listener asks for when
// Options.RcvBuf is zero: room for thousands of uevents.
const DefaultRcvBuf = 8 << 20

// Options configure Listen. The zero value listens to every kernel uevent.
type Options struct {
	// Subsystems keeps only events whose SUBSYSTEM is one of these
	// ("block", "dax"); empty keeps all.
	Subsystems []string
	// RcvBuf is the receive buffer size to ask for, in bytes (the kernel
	// doubles it for bookkeeping and enforces a small minimum). Zero
	// means DefaultRcvBuf.
	RcvBuf int
	// Mode is Kernel (the default) or Udev.
	Mode Mode
}

// Stats counts what a Listener has received. Every datagram read is in
// Received and then in exactly one of Delivered, Filtered, Rejected and
// Malformed.
type Stats struct {
	Received  uint64 // datagrams read from the socket
	Delivered uint64 // events returned by Next
	Filtered  uint64 // well-formed events of other subsystems
	Rejected  uint64 // datagrams from a sender the mode does not trust
	Malformed uint64 // datagrams that are not uevents
	Fallback  uint64 // events go-udev refused and this package parsed
	Overruns  uint64 // times Next returned ErrOverrun
}

// Listener receives uevents from one netlink socket. Next must not be
// called from several goroutines at once (calls are serialised); Close may
// be called at any time.
type Listener struct {
	f      *os.File // owns the socket
	rc     syscall.RawConn
	mode   Mode
	subs   map[string]bool
	rcvbuf int

	mu     sync.Mutex // serialises Next; guards buf and oob
	buf    []byte
	oob    []byte
	closed atomic.Bool
	once   sync.Once

	received, delivered, filtered, rejected, malformed, fallback, overruns atomic.Uint64
}

// maxMsg bounds one datagram. The kernel's uevents are under 2 KiB plus
// the devpath; udevd's are larger but far from this.
const maxMsg = 64 << 10

// Listen opens a uevent socket as o asks. The socket is close-on-exec and
// non-blocking, and its receive buffer is set with SO_RCVBUFFORCE when the
// process may, or else with SO_RCVBUF (then capped by
// net.core.rmem_max).
func Listen(o Options) (*Listener, error) {
	var group netlink.Mode
	switch o.Mode {
	case Kernel:
		group = netlink.KernelEvent
	case Udev:
		group = netlink.UdevEvent
	default:
		return nil, fmt.Errorf("uevent: listen: unknown mode %d: %w", int(o.Mode), unix.EINVAL)
	}
	size := o.RcvBuf
	if size <= 0 {
		size = DefaultRcvBuf
	}

	// go-udev opens the socket without SOCK_CLOEXEC; hold ForkLock as the
	// standard library does so that no fork sees it before CloseOnExec.
	conn := &netlink.UEventConn{}
	syscall.ForkLock.RLock()
	err := conn.Connect(group)
	if err == nil {
		unix.CloseOnExec(conn.Fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("uevent: listen: netlink socket (%s group): %w", o.Mode, err)
	}
	fd := conn.Fd
	fail := func(what string, err error) (*Listener, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent: listen: %s: %w", what, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("set non-blocking", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
			return fail("set receive buffer", err)
		}
	}
	if o.Mode == Udev {
		// udevd's messages are trusted when root sent them.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			return fail("SO_PASSCRED", err)
		}
	}
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fail("read receive buffer size", err)
	}
	// From here f owns fd.
	f := os.NewFile(uintptr(fd), "uevent-netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uevent: listen: %w", err)
	}
	l := &Listener{
		f:      f,
		rc:     rc,
		mode:   o.Mode,
		rcvbuf: rcvbuf,
		buf:    make([]byte, maxMsg),
		oob:    make([]byte, unix.CmsgSpace(unix.SizeofUcred)),
	}
	if len(o.Subsystems) > 0 {
		l.subs = make(map[string]bool, len(o.Subsystems))
		for _, s := range o.Subsystems {
			l.subs[s] = true
		}
	}
	return l, nil
}

// RcvBuf returns the socket's receive buffer size as the kernel reports
// it (SO_RCVBUF: twice what was granted).
func (l *Listener) RcvBuf() int { return l.rcvbuf }

// Stats returns the counters so far.
func (l *Listener) Stats() Stats {
	return Stats{
		Received:  l.received.Load(),
		Delivered: l.delivered.Load(),
		Filtered:  l.filtered.Load(),
		Rejected:  l.rejected.Load(),
		Malformed: l.malformed.Load(),
		Fallback:  l.fallback.Load(),
		Overruns:  l.overruns.Load(),
	}
}

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Next blocks until the next event that passes the subsystem filter and
// returns it. It returns ErrOverrun when events were lost (the Listener
// stays usable: call Next again), ctx.Err() when ctx ends first, and
// ErrClosed once the Listener is closed. Any other error is a failure of
// the socket and final.
func (l *Listener) Next(ctx context.Context) (Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return Event{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Event{}, err
	}
	if ctx.Done() != nil {
		woke := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			l.f.SetReadDeadline(aLongTimeAgo)
			close(woke)
		})
		defer func() {
			if !stop() {
				// The deadline was set for this call; wait until it is,
				// then clear it for the next one.
				<-woke
				l.f.SetReadDeadline(time.Time{})
			}
		}()
	}
	for {
		msg, from, oob, err := l.recv()
		switch {
		case l.closed.Load():
			return Event{}, ErrClosed
		case errors.Is(err, unix.ENOBUFS):
			l.overruns.Add(1)
			return Event{}, ErrOverrun
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			// Not this call's deadline (cannot happen: each call clears
			// its own before returning); clear it and read on.
			l.f.SetReadDeadline(time.Time{})
			continue
		case errors.Is(err, errTruncated):
			l.received.Add(1)
			l.malformed.Add(1)
			continue
		case err != nil:
			return Event{}, fmt.Errorf("uevent: receive: %w", err)
		}
		l.received.Add(1)
		if !l.trusted(msg, from, oob) {
			l.rejected.Add(1)
			continue
		}
		ev, fallback, err := parse(msg)
		if err != nil {
			l.malformed.Add(1)
			continue
		}
		if fallback {
			l.fallback.Add(1)
		}
		if l.subs != nil && !l.subs[ev.Subsystem] {
			l.filtered.Add(1)
			continue
		}
		l.delivered.Add(1)
		return ev, nil
	}
}

// errTruncated is recv's error for a datagram larger than the buffer.
var errTruncated = fmt.Errorf("datagram larger than %d bytes: %w", maxMsg, unix.EMSGSIZE)

// recv reads one datagram into l.buf, with its sender and control
// messages. EINTR is retried; EAGAIN waits in the runtime poller, which
// Close and read deadlines wake.
func (l *Listener) recv() (msg []byte, from unix.Sockaddr, oob []byte, err error) {
	var n, oobn, flags int
	var rerr error
	err = l.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, from, rerr = unix.Recvmsg(int(fd), l.buf, l.oob, 0)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, nil, nil, errTruncated
	}
	return l.buf[:n], from, l.oob[:oobn], nil
}

// trusted reports whether the datagram comes from whom the mode listens
// to: the kernel (port 0) for Kernel, a root process sending the libudev
// format for Udev. Anyone with CAP_NET_ADMIN can send to these groups.
func (l *Listener) trusted(msg []byte, from unix.Sockaddr, oob []byte) bool {
	sa, ok := from.(*unix.SockaddrNetlink)
	if !ok {
		return false
	}
	switch l.mode {
	case Kernel:
		return sa.Pid == 0 && !bytes.HasPrefix(msg, []byte(udevPrefix))
	case Udev:
		if sa.Pid == 0 || !isUdevFormat(msg) {
			return false
		}
		cmsgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			return false
		}
		for _, m := range cmsgs {
			if cred, err := unix.ParseUnixCredentials(&m); err == nil {
				return cred.Uid == 0
			}
		}
	}
	return false
}

// Close closes the socket. A Next blocked in another goroutine returns
// ErrClosed promptly. Close may be called more than once; later calls do
// nothing and return nil.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.closed.Store(true)
		if cerr := l.f.Close(); cerr != nil {
			err = fmt.Errorf("uevent: close: %w", cerr)
		}
	})
	return err
}
