// Package uevent receives kernel uevents from netlink, for the daxstack
// daemon to learn that a leaf appeared, went away or changed media.
//
// There are two types. A Listener owns one NETLINK_KOBJECT_UEVENT socket
// bound to the kernel's multicast group (raw kernel events, the default) or
// to udevd's (events re-broadcast after rule processing, with the libudev
// header). Next returns the next Event whose subsystem passes the filter.
// An Event is one uevent with the fields daxstack looks at decoded (action,
// devpath, subsystem, device name and number, DISKSEQ, the kernel's
// sequence number) and every property kept in Env.
//
// Uevents are hints, never the truth. The kernel drops uevents when the
// socket's receive buffer is full; the Listener then returns ErrOverrun
// once and carries on, and the caller must rescan authoritative state
// (sysfs) because it cannot know what it missed. The buffer is 8 MiB by
// default, forced past net.core.rmem_max when the process may (it needs
// CAP_NET_ADMIN), so this is rare but must be handled.
//
// Messages are authenticated by their sender: in kernel mode only
// messages from the kernel (netlink port 0) are accepted, in udev mode
// only messages with the libudev header sent by root. Anything else, and
// anything that cannot be parsed, is counted in Stats and skipped, never
// returned as an error.
//
// Parsing is done by github.com/pilebones/go-udev's netlink.ParseUEvent
// first. It refuses some well-formed messages (a value containing '=',
// which a device-mapper name may, a devpath containing '@', an action it
// does not know), so whatever it refuses goes through a small parser of
// this package that accepts everything it accepts, with the same result,
// and more. Device names are normalised: the kernel sends DEVNAME=loop0,
// udevd DEVNAME=/dev/loop0; Event.DevName is "loop0" for both.
//
// Close may be called at any time from any goroutine, also while Next is
// blocked: the socket is non-blocking and read through the runtime
// poller, so Close wakes the reader at once, and Next then returns
// ErrClosed. go-udev's Monitor is not used: it cannot be stopped and gives
// up at the first ENOBUFS.
package uevent
