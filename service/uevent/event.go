package uevent

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/pilebones/go-udev/netlink"
)

// Event is one uevent. The named fields are decoded from Env, which holds
// every property of the message as sent; a field whose property is absent
// or not a number is zero.
type Event struct {
	Seq       uint64 // SEQNUM: the kernel's uevent sequence number
	Action    string // "add", "remove", "change", "move", "online", "offline", "bind", "unbind", ...
	DevPath   string // DEVPATH, under /sys: "/devices/virtual/block/loop0"
	Subsystem string // SUBSYSTEM: "block", "dax", ...
	// DevName is DEVNAME without a leading "/dev/": the kernel's "loop0"
	// and udevd's "/dev/loop0" are both "loop0"; "dri/card0" stays so.
	DevName string
	DevType string // DEVTYPE: "disk", "partition", ...
	Major   uint32 // MAJOR
	Minor   uint32 // MINOR
	// DiskSeq is DISKSEQ, the kernel's number for one life of a disk's
	// media: it grows each time a loop device is attached, for one.
	DiskSeq uint64
	Env     map[string]string
}

// MediaChange reports whether the event says the disk's media changed
// (DISK_MEDIA_CHANGE=1): a loop device detached or attached, a medium
// ejected or inserted. The block device's content is not what it was.
func (e Event) MediaChange() bool { return e.Env["DISK_MEDIA_CHANGE"] == "1" }

// HasDevNum reports whether the event carries a device number (MAJOR and
// MINOR), which Major and Minor then hold.
func (e Event) HasDevNum() bool {
	_, okMaj := e.Env["MAJOR"]
	_, okMin := e.Env["MINOR"]
	return okMaj && okMin
}

// String formats the event on one line for logs.
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Action, e.DevPath)
	if e.Subsystem != "" {
		fmt.Fprintf(&b, " subsystem=%s", e.Subsystem)
	}
	if e.DevName != "" {
		fmt.Fprintf(&b, " devname=%s", e.DevName)
	}
	if e.HasDevNum() {
		fmt.Fprintf(&b, " dev=%d:%d", e.Major, e.Minor)
	}
	if e.DiskSeq != 0 {
		fmt.Fprintf(&b, " diskseq=%d", e.DiskSeq)
	}
	if e.MediaChange() {
		b.WriteString(" media-change")
	}
	fmt.Fprintf(&b, " seq=%d", e.Seq)
	return b.String()
}

// Parse decodes one uevent datagram, in the kernel's format
// ("ACTION@DEVPATH\0KEY=VALUE\0...") or udevd's (the libudev header, then
// "KEY=VALUE\0..."). Fields are NUL-terminated; a last field without its
// NUL is taken as cut short and ignored. Properties without '=' or with an
// empty key are ignored too. It returns an error matching ErrMalformed for
// a message that is neither.
func Parse(raw []byte) (Event, error) {
	ev, _, err := parse(raw)
	return ev, err
}

// parse is Parse, also telling whether go-udev refused the message and the
// fallback parser was needed.
func parse(raw []byte) (ev Event, fallback bool, err error) {
	if action, devpath, env, ok := parseGoUdev(raw); ok {
		return newEvent(action, devpath, env), false, nil
	}
	action, devpath, env, err := parseFallback(raw)
	if err != nil {
		return Event{}, true, err
	}
	return newEvent(action, devpath, env), true, nil
}

// parseGoUdev runs netlink.ParseUEvent. It is third-party code fed with
// whatever arrives on a socket, so a panic in it is taken as a refusal
// rather than allowed to take the daemon down.
func parseGoUdev(raw []byte) (action, devpath string, env map[string]string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	u, err := netlink.ParseUEvent(raw)
	if err != nil || u == nil {
		return "", "", nil, false
	}
	return string(u.Action), u.KObj, u.Env, true
}

// The udevd message header (struct udev_monitor_netlink_header in
// systemd's libudev): an 8-byte prefix, then 32-bit words, the magic in
// network order and the offsets in host order.
const (
	udevPrefix      = "libudev\x00"
	udevMagic       = 0xfeedcafe
	udevMagicOff    = 8
	udevPropsOffOff = 16
	udevHeaderLen   = 40
)

// isUdevFormat tells a udevd message from a kernel one, the way go-udev
// does: the prefix and more than a bare header.
func isUdevFormat(raw []byte) bool {
	return len(raw) > udevHeaderLen && bytes.HasPrefix(raw, []byte(udevPrefix))
}

// parseFallback parses what go-udev refuses. It accepts every message
// go-udev accepts and returns the same action, devpath and properties for
// it (FuzzParse checks this); beyond that it takes any non-empty action,
// splits "ACTION@DEVPATH" at the first '@' and a property at its first
// '=', and skips fields it cannot use instead of refusing the message.
func parseFallback(raw []byte) (action, devpath string, env map[string]string, err error) {
	if isUdevFormat(raw) {
		if binary.BigEndian.Uint32(raw[udevMagicOff:]) != udevMagic {
			return "", "", nil, fmt.Errorf("%w: libudev header with a bad magic number", ErrMalformed)
		}
		off := binary.NativeEndian.Uint32(raw[udevPropsOffOff:])
		if uint64(off) >= uint64(len(raw)) {
			return "", "", nil, fmt.Errorf("%w: libudev properties offset %d past the end (%d bytes)", ErrMalformed, off, len(raw))
		}
		env = parseProps(raw[off:])
		action = strings.ToLower(env["ACTION"])
		if action == "" {
			return "", "", nil, fmt.Errorf("%w: libudev message without ACTION", ErrMalformed)
		}
		return action, env["DEVPATH"], env, nil
	}
	// Without a NUL the whole message is the header, as for go-udev.
	head, rest, _ := bytes.Cut(raw, []byte{0})
	a, d, ok := bytes.Cut(head, []byte("@"))
	if !ok || len(a) == 0 {
		return "", "", nil, fmt.Errorf("%w: header %q is not ACTION@DEVPATH", ErrMalformed, head)
	}
	return string(a), string(d), parseProps(rest), nil
}

// parseProps splits NUL-terminated KEY=VALUE fields. The part after the
// last NUL is not a field (it is empty in a well-formed message).
func parseProps(b []byte) map[string]string {
	env := make(map[string]string)
	for {
		field, rest, ok := bytes.Cut(b, []byte{0})
		if !ok {
			return env
		}
		b = rest
		if k, v, ok := bytes.Cut(field, []byte("=")); ok {
			env[string(k)] = string(v)
		}
	}
}

// newEvent decodes the named fields from the properties. A property with
// an empty key ("=x", which go-udev keeps) carries nothing and is dropped.
func newEvent(action, devpath string, env map[string]string) Event {
	if env == nil {
		env = map[string]string{}
	}
	delete(env, "")
	return Event{
		Seq:       parseUint(env["SEQNUM"], 64),
		Action:    action,
		DevPath:   devpath,
		Subsystem: env["SUBSYSTEM"],
		DevName:   NormalizeDevName(env["DEVNAME"]),
		DevType:   env["DEVTYPE"],
		Major:     uint32(parseUint(env["MAJOR"], 32)),
		Minor:     uint32(parseUint(env["MINOR"], 32)),
		DiskSeq:   parseUint(env["DISKSEQ"], 64),
		Env:       env,
	}
}

// NormalizeDevName returns a DEVNAME relative to /dev, as the kernel sends
// it: "/dev/loop0" and "loop0" are both "loop0".
func NormalizeDevName(name string) string {
	return strings.TrimPrefix(name, "/dev/")
}

func parseUint(s string, bits int) uint64 {
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0
	}
	return n
}
