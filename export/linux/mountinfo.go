package linux

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Paths are unescaped (the kernel writes space, tab, newline and backslash
// as \040, \011, \012 and \134).
type Mount struct {
	ID, Parent   int
	Dev          Dev    // st_dev of files in the filesystem
	Root         string // the filesystem's directory mounted here
	Point        string // the mount point
	Options      string // per-mount options
	Optional     []string
	FSType       string
	Source       string
	SuperOptions string
}

// ParseMountinfo parses the mountinfo format. A malformed line is an error
// naming its number; nothing is returned then.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		m, err := parseMountLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

func parseMountLine(line []byte) (Mount, error) {
	f := strings.Fields(string(line))
	// Six fields, optional ones, "-", then three.
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 10 || sep < 0 || len(f) != sep+4 {
		return Mount{}, fmt.Errorf("%q: want 6 fields, optional fields, \"-\" and 3 fields", line)
	}
	var m Mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return Mount{}, fmt.Errorf("mount id %q: %w", f[0], err)
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return Mount{}, fmt.Errorf("parent id %q: %w", f[1], err)
	}
	if m.Dev, err = ParseDev(f[2]); err != nil {
		return Mount{}, err
	}
	if m.Root, err = unescapeMount(f[3]); err != nil {
		return Mount{}, err
	}
	if m.Point, err = unescapeMount(f[4]); err != nil {
		return Mount{}, err
	}
	m.Options = f[5]
	if sep > 6 {
		m.Optional = f[6:sep]
	}
	m.FSType = f[sep+1]
	if m.Source, err = unescapeMount(f[sep+2]); err != nil {
		return Mount{}, err
	}
	m.SuperOptions = f[sep+3]
	return m, nil
}

// unescapeMount undoes the kernel's octal escapes (\NNN) in a mountinfo
// field.
func unescapeMount(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 >= len(s) {
			return "", fmt.Errorf("%q: truncated escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%q: bad escape %q", s, s[i:i+4])
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}

// Mounts reads this process's mount table.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// MountsOf returns the mounts of filesystems whose device is d (each bind
// mount of one filesystem is a line of its own).
func MountsOf(d Dev) ([]Mount, error) {
	all, err := Mounts()
	if err != nil {
		return nil, err
	}
	var out []Mount
	for _, m := range all {
		if m.Dev == d {
			out = append(out, m)
		}
	}
	return out, nil
}

// MountAt returns the topmost mount whose mount point is path (an absolute,
// clean path), if any.
func MountAt(path string) (Mount, bool, error) {
	all, err := Mounts()
	if err != nil {
		return Mount{}, false, err
	}
	var found Mount
	ok := false
	for _, m := range all {
		if m.Point == path {
			found, ok = m, true // later lines are mounted over earlier ones
		}
	}
	return found, ok, nil
}
