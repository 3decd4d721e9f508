package dax

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Reading sysfs attributes. Every value is trimmed of surrounding space;
// numbers are decimal or, with a 0x prefix, hexadecimal (resource files).

func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

func readUint(path string) (uint64, error) {
	s, err := readAttr(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 0, 64)
}

// readUevent returns the KEY=value pairs of a uevent file.
func readUevent(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out, nil
}

// subsystem returns the name of the subsystem a sysfs device directory
// belongs to (the last element of its "subsystem" link), or "".
func subsystem(dir string) string {
	t, err := os.Readlink(filepath.Join(dir, "subsystem"))
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// parseDevno parses "major:minor" (decimal, no sign or space).
func parseDevno(s string) (major, minor uint32, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found || a == "" || b == "" || a[0] == '+' || b[0] == '+' {
		return 0, 0, false
	}
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	return uint32(ma), uint32(mi), err1 == nil && err2 == nil
}

// pmemName reports whether a kernel block device name is a pmem namespace
// (pmem0, pmem1.2), which is where the nvdimm driver keeps badblocks.
func pmemName(name string) bool {
	rest, ok := strings.CutPrefix(name, "pmem")
	if !ok {
		return false
	}
	a, b, dot := strings.Cut(rest, ".")
	return digits(a) && (!dot || digits(b))
}

// loopName reports whether a kernel block device name is a loop device.
func loopName(name string) bool {
	rest, ok := strings.CutPrefix(name, "loop")
	return ok && digits(rest)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
