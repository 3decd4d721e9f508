package fsfiles

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// openRef is a file of the filesystem that a process holds: by a file
// descriptor, or by a mapping (which keeps a file alive after its
// descriptor is closed).
type openRef struct {
	Pid   int
	Path  string // where the link under /proc points, " (deleted)" removed
	Via   string // the /proc link, to reopen the file through
	Ino   uint64
	Nlink uint64
	Mode  uint32
	Write bool // open for writing, or mapped shared and writable
}

// scanOpen calls fn for every descriptor and file mapping of every process
// under proc (normally "/proc") that refers to an inode of device dev.
// Processes that end while they are read, and those we may not look at,
// are skipped.
func scanOpen(proc string, dev uint64, fn func(openRef)) error {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 16<<10)
	for _, pe := range ents {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil || pid <= 0 {
			continue
		}
		base := filepath.Join(proc, pe.Name())
		scanFds(base, pid, dev, fn)
		buf = scanMaps(base, pid, dev, buf, fn)
	}
	return nil
}

func scanFds(base string, pid int, dev uint64, fn func(openRef)) {
	fdDir := filepath.Join(base, "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return
	}
	for _, fe := range fds {
		via := filepath.Join(fdDir, fe.Name())
		var st unix.Stat_t
		if unix.Stat(via, &st) != nil || st.Dev != dev {
			continue
		}
		target, _ := os.Readlink(via)
		fn(openRef{
			Pid: pid, Via: via, Path: strings.TrimSuffix(target, " (deleted)"),
			Ino: st.Ino, Nlink: uint64(st.Nlink), Mode: st.Mode, Write: fdWritable(filepath.Join(base, "fdinfo", fe.Name())),
		})
	}
}

// fdWritable reads the flags line of a /proc/<pid>/fdinfo/<fd> file.
func fdWritable(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	flags, ok := parseFdinfoFlags(data)
	return ok && flags&unix.O_ACCMODE != unix.O_RDONLY
}

// parseFdinfoFlags returns the octal "flags:" field of an fdinfo file.
func parseFdinfoFlags(data []byte) (uint64, bool) {
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("flags:")); ok {
			f, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// scanMaps reads one process's maps with buf as the line buffer, and
// returns the buffer for the next.
func scanMaps(base string, pid int, dev uint64, buf []byte, fn func(openRef)) []byte {
	f, err := os.Open(filepath.Join(base, "maps"))
	if err != nil {
		return buf
	}
	defer f.Close()
	var seen map[uint64]bool
	sc := bufio.NewScanner(f)
	sc.Buffer(buf, 1<<20)
	// The device as task_mmu.c prints it ("%02x:%02x"): lines of other
	// devices are skipped before they are parsed.
	devField := []byte(fmt.Sprintf(" %02x:%02x ", unix.Major(dev), unix.Minor(dev)))
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), devField) {
			continue
		}
		m, err := parseMapsLine(sc.Text())
		if err != nil || m.Dev != dev || m.Ino == 0 || seen[m.Ino] {
			continue
		}
		if seen == nil {
			seen = map[uint64]bool{}
		}
		seen[m.Ino] = true
		via := filepath.Join(base, "map_files", m.Range)
		var st unix.Stat_t
		if unix.Stat(via, &st) != nil || st.Dev != dev || st.Ino != m.Ino {
			continue
		}
		fn(openRef{Pid: pid, Via: via, Path: strings.TrimSuffix(m.Path, " (deleted)"), Ino: m.Ino, Nlink: uint64(st.Nlink), Mode: st.Mode, Write: m.SharedWrite})
	}
	return buf
}

// mapsLine is one line of /proc/<pid>/maps.
type mapsLine struct {
	Range       string // "start-end", the name of the map_files link
	SharedWrite bool   // perms "rw?s"
	Dev         uint64 // unix.Mkdev of the "MM:mm" field (hexadecimal)
	Ino         uint64
	Path        string
}

// parseMapsLine decodes "start-end perms offset MM:mm inode [path]" as
// fs/proc/task_mmu.c prints it (addresses, offset and device numbers in
// hexadecimal, the inode in decimal, the path after padding spaces).
func parseMapsLine(line string) (mapsLine, error) {
	var m mapsLine
	rest := line
	field := func() (string, bool) {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f, f != ""
		}
		f := rest[:i]
		rest = rest[i:]
		return f, true
	}
	rng, ok1 := field()
	perms, ok2 := field()
	_, ok3 := field()
	devs, ok4 := field()
	inos, ok5 := field()
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || len(perms) != 4 {
		return m, fmt.Errorf("%w: maps line %q", ErrMalformed, line)
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if _, err := strconv.ParseUint(lo, 16, 64); !ok || err != nil {
		return m, fmt.Errorf("%w: maps range %q", ErrMalformed, rng)
	}
	if _, err := strconv.ParseUint(hi, 16, 64); err != nil {
		return m, fmt.Errorf("%w: maps range %q", ErrMalformed, rng)
	}
	ma, mi, ok := strings.Cut(devs, ":")
	major, err1 := strconv.ParseUint(ma, 16, 32)
	minor, err2 := strconv.ParseUint(mi, 16, 32)
	ino, err3 := strconv.ParseUint(inos, 10, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil {
		return m, fmt.Errorf("%w: maps device or inode in %q", ErrMalformed, line)
	}
	m.Range = rng
	m.SharedWrite = perms[1] == 'w' && perms[3] == 's'
	m.Dev = unix.Mkdev(uint32(major), uint32(minor))
	m.Ino = ino
	m.Path = strings.TrimLeft(rest, " ")
	return m, nil
}
