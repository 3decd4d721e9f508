package fsfiles

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of /proc/<pid>/mountinfo (proc(5)): a mount of a
// filesystem, whose device is Major:Minor, showing the filesystem's
// directory Root at Point.
type Mount struct {
	ID, Parent   int
	Major, Minor uint32
	Root         string // the directory of the filesystem at the mount's root ("/" unless a bind mount)
	Point        string // the mount point, in this process's namespace
	Options      string // per-mount options (rw, noatime...)
	Optional     []string
	FSType       string
	Source       string
	SuperOptions string // per-superblock options
}

// ParseMountInfo parses the contents of a mountinfo file. Each line is
//
//	ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
//
// with spaces, tabs, newlines and backslashes in ROOT, POINT and SOURCE
// written as octal escapes (\040, \011, \012, \134), as the kernel's
// seq_path does. A line that does not have that shape is an error matching
// ErrMalformed; nothing is returned with it.
func ParseMountInfo(data []byte) ([]Mount, error) {
	var out []Mount
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		m, err := parseMountLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseMountLine(line string) (Mount, error) {
	f := strings.Split(line, " ")
	sep := slices.Index(f, "-")
	if sep < 6 || len(f)-sep != 4 {
		return Mount{}, fmt.Errorf("%w: %q: not ID PARENT DEV ROOT POINT OPTIONS ... - TYPE SOURCE OPTIONS", ErrMalformed, line)
	}
	var m Mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil || m.ID < 0 {
		return Mount{}, fmt.Errorf("%w: mount ID %q", ErrMalformed, f[0])
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil || m.Parent < 0 {
		return Mount{}, fmt.Errorf("%w: parent ID %q", ErrMalformed, f[1])
	}
	maj, min, ok := strings.Cut(f[2], ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return Mount{}, fmt.Errorf("%w: device %q", ErrMalformed, f[2])
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	if m.Root, err = unescapeMount(f[3]); err != nil {
		return Mount{}, err
	}
	if m.Point, err = unescapeMount(f[4]); err != nil {
		return Mount{}, err
	}
	if m.Root == "" || m.Point == "" || f[5] == "" || f[sep+1] == "" {
		return Mount{}, fmt.Errorf("%w: %q: empty field", ErrMalformed, line)
	}
	m.Options = f[5]
	if sep > 6 {
		m.Optional = slices.Clone(f[6:sep])
	}
	m.FSType = f[sep+1]
	if m.Source, err = unescapeMount(f[sep+2]); err != nil {
		return Mount{}, err
	}
	m.SuperOptions = f[sep+3]
	return m, nil
}

// unescapeMount undoes the kernel's octal escapes (a backslash and three
// octal digits); any other backslash is an error.
func unescapeMount(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%w: bad escape in %q", ErrMalformed, s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%w: bad escape in %q", ErrMalformed, s)
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}

// escapeMount is the kernel's escaping of mountinfo paths (seq_path with
// " \t\n\\"), the inverse of unescapeMount.
func escapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// readMountInfo reads and parses a mountinfo file.
func readMountInfo(path string) ([]Mount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseMountInfo(data)
}

// MountsOf returns the mounts of device major:minor, in the order listed.
func MountsOf(mounts []Mount, major, minor uint32) []Mount {
	var out []Mount
	for _, m := range mounts {
		if m.Major == major && m.Minor == minor {
			out = append(out, m)
		}
	}
	return out
}

// rankMounts orders the mounts of one filesystem by preference: mounts of
// the filesystem's root ("/") first, then bind mounts by the length of
// their root (nearest the filesystem's root first); ties keep the
// mountinfo order, which is the order of mounting. The first candidate that
// still shows the filesystem at its mount point is the one used.
func rankMounts(ms []Mount) []Mount {
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b Mount) int {
		ra, rb := a.Root == "/", b.Root == "/"
		switch {
		case ra && !rb:
			return -1
		case rb && !ra:
			return 1
		}
		return len(a.Root) - len(b.Root)
	})
	return out
}
