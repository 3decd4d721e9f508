package dax

// Exclusive claims of block-device leaves, as device-mapper claims its
// children: the kernel lets one exclusive opener (open(2) with O_EXCL on
// a block device: a mount, dm, md, swap) hold a block device at a time,
// and refuses the others with EBUSY, while ordinary opens go on working.
// A daxstack that holds a stack (the daemon) keeps such a descriptor for
// every block-device leaf, so that nobody mounts a device under a live
// table; a daxstack that holds nothing for long (the CLI without the
// daemon) can only check, when it opens a leaf, that nobody holds it.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/errno"
)

// ClaimMode says what Opener.Open does about exclusive use of a block
// device (pmem or any other block device; files and device-dax are not
// claimed).
type ClaimMode int

const (
	// ClaimNone: no check, no claim (the behaviour of the zero Opener).
	ClaimNone ClaimMode = iota
	// ClaimCheck: refuse a block device that is mounted (by number, in
	// this mount namespace's /proc/self/mountinfo, the device or one of
	// its partitions) or that another opener holds exclusively (found by
	// an O_EXCL open, closed at once). Nothing is held afterwards: this is
	// what a process that does not live on can promise (see the package
	// documentation of claims in claim.go and Opener.Claim).
	ClaimCheck
	// ClaimHold: as ClaimCheck, then keep the device open with O_EXCL
	// until the leaf is closed, so that mounting it (or any other
	// exclusive open: another dm table, mkfs, a second daxstack daemon)
	// fails with EBUSY meanwhile. The leaf's own I/O does not need the
	// claim's descriptor and is not hindered by it. Several leaves of the
	// same device in one process share one claim, released when the last
	// of them is closed.
	ClaimHold
)

// Errors of claims. Both match syscall.EBUSY.
var (
	// ErrMounted: the block device, or a partition of it, is mounted.
	ErrMounted = errno.New("block device is mounted", syscall.EBUSY)
	// ErrHeld: another opener holds the block device exclusively (a
	// mount in another namespace, device-mapper, md, swap, another
	// daxstack).
	ErrHeld = errno.New("block device is held exclusively by another user", syscall.EBUSY)
)

// ClaimError is a block device refused as a leaf because someone else
// uses it. It matches ErrMounted or ErrHeld, and syscall.EBUSY.
type ClaimError struct {
	Path    string   // the device node
	Devno   string   // "major:minor"
	Mounts  []string // where it (or a partition: "/mnt on pmem0p1") is mounted
	Holders []string // the kernel's holders of it (sysfs holders/: dm-0, md127)
	Err     error    // ErrMounted or ErrHeld
}

func (e *ClaimError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %v", e.Path, e.Devno, e.Err)
	if len(e.Mounts) > 0 {
		fmt.Fprintf(&b, " on %s", strings.Join(e.Mounts, ", "))
	}
	if len(e.Holders) > 0 {
		fmt.Fprintf(&b, " (held by %s)", strings.Join(e.Holders, ", "))
	}
	return b.String()
}

// Unwrap returns ErrMounted or ErrHeld.
func (e *ClaimError) Unwrap() error { return e.Err }

// claim is one O_EXCL descriptor of a block device, shared by the leaves
// of this process that use the device.
type claim struct {
	rdev uint64
	fd   int
	refs int
}

// claims are this process's claims, by device number. A probe of a
// device this process holds would fail against its own claim, so a
// device found here is known not to be held by anyone else.
var claims = struct {
	sync.Mutex
	m map[uint64]*claim
}{m: map[uint64]*claim{}}

// mountinfoPath is where this mount namespace's mounts are listed.
var mountinfoPath = "/proc/self/mountinfo"

// claimBlock checks (and with ClaimHold, takes) exclusive use of the
// block device leaf l, whose node is path and sysfs directory sysdir.
func (o *Opener) claimBlock(l *Leaf, path, sysdir string) error {
	if o.Claim == ClaimNone {
		return nil
	}
	claims.Lock()
	defer claims.Unlock()
	if c := claims.m[l.rdev]; c != nil {
		if o.Claim == ClaimHold {
			c.refs++
			l.claim, l.hold = c, true
		}
		return nil
	}
	devno := fmt.Sprintf("%d:%d", unix.Major(l.rdev), unix.Minor(l.rdev))
	if mounts := mountsOfDevice(sysdir, devno); len(mounts) > 0 {
		return &ClaimError{Path: path, Devno: devno, Mounts: mounts, Holders: holdersOf(sysdir), Err: ErrMounted}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err == unix.EBUSY {
		return &ClaimError{Path: path, Devno: devno, Mounts: mountsOfDevice(sysdir, devno), Holders: holdersOf(sysdir), Err: ErrHeld}
	}
	if err != nil {
		return pathErr("open O_EXCL", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != l.rdev {
		unix.Close(fd)
		return pathErr("open O_EXCL", path, ErrChanged)
	}
	if o.Claim == ClaimCheck {
		unix.Close(fd)
		return nil
	}
	c := &claim{rdev: l.rdev, fd: fd, refs: 1}
	claims.m[l.rdev] = c
	l.claim = c
	l.hold = true
	return nil
}

// reclaim takes a ClaimHold leaf's claim again once it is back (SetLost
// false), if nobody took the device meanwhile; otherwise it stays
// unclaimed, as a leaf marked back cannot refuse.
func (l *Leaf) reclaim() {
	if l.Claimed() {
		return
	}
	o := Opener{Claim: ClaimHold}
	o.claimBlock(l, l.path, filepath.Dir(l.sizeFile))
}

// release drops the leaf's share of its claim; the last share closes the
// O_EXCL descriptor, which ends the claim before close(2) returns.
func (l *Leaf) release() error {
	claims.Lock()
	defer claims.Unlock()
	c := l.claim
	if c == nil {
		return nil
	}
	l.claim = nil
	if c.refs--; c.refs > 0 {
		return nil
	}
	delete(claims.m, c.rdev)
	if err := unix.Close(c.fd); err != nil {
		return pathErr("close O_EXCL", l.path, err)
	}
	return nil
}

// Claimed reports whether the leaf holds its block device exclusively
// (Opener.Claim ClaimHold), until Close.
func (l *Leaf) Claimed() bool {
	claims.Lock()
	defer claims.Unlock()
	return l.claim != nil
}

// mountsOfDevice returns the mount points of the device devno and of its
// partitions (sysfs subdirectories with a "partition" file), from this
// mount namespace's mountinfo.
func mountsOfDevice(sysdir, devno string) []string {
	devs := map[string]string{devno: ""}
	if ents, err := os.ReadDir(sysdir); err == nil {
		for _, e := range ents {
			part := filepath.Join(sysdir, e.Name())
			if _, err := os.Stat(filepath.Join(part, "partition")); err != nil {
				continue
			}
			if d, err := readAttr(filepath.Join(part, "dev")); err == nil {
				devs[d] = e.Name()
			}
		}
	}
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	ms, err := parseMountinfo(f)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		part, ok := devs[m.devno]
		switch {
		case !ok:
		case part == "":
			out = append(out, m.point)
		default:
			out = append(out, m.point+" on "+part)
		}
	}
	return out
}

// holdersOf lists the kernel's holders of a block device (sysfs holders/).
func holdersOf(sysdir string) []string {
	ents, err := os.ReadDir(filepath.Join(sysdir, "holders"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// mount is one line of mountinfo: the device number of the mounted
// filesystem and where it is mounted.
type mount struct{ devno, point string }

// parseMountinfo parses /proc/<pid>/mountinfo (proc(5)): "id parent
// major:minor root mount-point options [optional...] - type source
// super-options" per line, with space, tab, newline and backslash in
// paths written as octal escapes. Lines it cannot parse are an error.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	br := bufio.NewReader(r)
	for no := 1; ; no++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			f := bytes.Fields(line)
			if len(f) < 5 {
				return nil, fmt.Errorf("mountinfo line %d: %d fields", no, len(f))
			}
			if _, _, ok := parseDevno(string(f[2])); !ok {
				return nil, fmt.Errorf("mountinfo line %d: device %q", no, f[2])
			}
			out = append(out, mount{devno: string(f[2]), point: unescapeOctal(string(f[4]))})
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// unescapeOctal undoes the kernel's \ooo escapes (seq_file's mangle).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for i := range 3 {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}
