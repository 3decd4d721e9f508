package dax

// How a leaf's bytes are reached, found out rather than assumed: MAP_SYNC
// can fail quietly into a page-cache mapping (a raw pmem namespace, a file
// on a filesystem mounted without -o dax), so after mapping a leaf the
// kernel's own description of the mapping is read back once.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Access modes, as Leaf.Access reports them.
const (
	// AccessDAXSync: a DAX mapping with MAP_SYNC in force (the kernel
	// shows the mapping's VmFlags "sf"): a device-dax device, or a file on
	// a filesystem mounted with -o dax over a device that supports it.
	// Stores reach the media once flushed from the CPU caches; no msync
	// is needed for metadata.
	AccessDAXSync = "dax-sync"
	// AccessDAX: a DAX mapping without MAP_SYNC (a DAX file whose device
	// cannot promise synchronous faults, such as virtio-pmem): msync is
	// what makes writes durable.
	AccessDAX = "dax"
	// AccessPageCache: mapped through the page cache: a block device (a
	// raw pmem namespace included: block devices cannot be mapped DAX),
	// or a file on a filesystem without DAX.
	AccessPageCache = "page-cache"
	// AccessPread: no mapping; I/O goes through pread and pwrite (the
	// leaf cannot be mapped, or Opener.Pread asked for it).
	AccessPread = "pread"
	// AccessNone: the leaf is lost, closed, or cannot be opened, so it is
	// not used at all.
	AccessNone = "none"
)

// smapsPath is where the mappings of this process are described.
var smapsPath = "/proc/self/smaps"

// vmFlagsOf returns the VmFlags the kernel shows for the mapping that
// starts at addr, reading smaps once. ok is false when smaps cannot be
// read or has no such mapping.
func vmFlagsOf(addr uintptr) (flags []string, ok bool) {
	f, err := os.Open(smapsPath)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	flags, found, err := parseSmapsFlags(f, addr)
	return flags, found && err == nil
}

// parseSmapsFlags reads smaps text (one header line "start-end perms
// offset dev inode [path]" per mapping, then "Key: value" lines, among
// them "VmFlags: rd wr sh ...") and returns the VmFlags of the mapping
// whose start address is addr. It stops reading once it has them.
func parseSmapsFlags(r io.Reader, addr uintptr) ([]string, bool, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	want := strconv.FormatUint(uint64(addr), 16)
	in := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer (a very long path): skip
			// the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, false, err
			}
			in = false
			if err == io.EOF {
				return nil, false, nil
			}
			continue
		}
		if len(line) > 0 {
			if start, ok := mappingStart(line); ok {
				in = start == want
			} else if in {
				if rest, ok := bytes.CutPrefix(line, []byte("VmFlags:")); ok {
					return strings.Fields(string(rest)), true, nil
				}
			}
		}
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// mappingStart returns the start address of an smaps header line
// ("7f1c2a000000-7f1c2a400000 rw-s ..."), as lower-case hexadecimal
// without leading zeros, or false for any other line.
func mappingStart(line []byte) (string, bool) {
	dash := bytes.IndexByte(line, '-')
	if dash <= 0 || dash > 16 {
		return "", false
	}
	for _, c := range line[:dash] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	rest := line[dash+1:]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return "", false
	}
	for _, c := range rest[:sp] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	s := strings.TrimLeft(string(line[:dash]), "0")
	if s == "" {
		s = "0"
	}
	return s, true
}

// statxDAX reports whether the inode behind fd is in DAX mode
// (STATX_ATTR_DAX), and whether the kernel could say.
func statxDAX(fd int) (dax, known bool) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, false
	}
	if stx.Attributes_mask&unix.STATX_ATTR_DAX == 0 {
		return false, false
	}
	return stx.Attributes&unix.STATX_ATTR_DAX != 0, true
}

// classify says how a mapping of the leaf is used: from the mapping's
// VmFlags when the kernel showed them (verified), else from what mmap
// and statx said.
func classify(kind string, flags []string, haveFlags, mappedSync, inodeDAX bool) (access string, verified bool) {
	dax := kind == KindDevdax || inodeDAX
	if haveFlags {
		for _, f := range flags {
			if f == "sf" {
				return AccessDAXSync, true
			}
		}
		if dax {
			return AccessDAX, true
		}
		return AccessPageCache, true
	}
	switch {
	case mappedSync:
		return AccessDAXSync, false
	case dax:
		return AccessDAX, false
	}
	return AccessPageCache, false
}

// Access returns how the leaf's bytes are reached (AccessDAXSync,
// AccessDAX, AccessPageCache or AccessPread), opening and mapping the leaf
// if no I/O did yet, or AccessNone with the reason when the leaf is lost,
// closed, or cannot be opened. The answer is found once per mapping: the
// kernel's VmFlags for the mapping ("sf" is MAP_SYNC in force) and the
// inode's DAX attribute (statx), not what was asked of mmap.
func (l *Leaf) Access() (string, error) {
	m, s, err := l.enter()
	l.exit(s)
	if err != nil {
		return AccessNone, err
	}
	return m.access, nil
}

// AccessVerified reports whether the leaf's access mode was read back
// from the kernel (smaps) rather than inferred from what mmap accepted.
// It is false before the leaf is mapped.
func (l *Leaf) AccessVerified() bool {
	if m := l.m.Load(); m != nil {
		return m.verified
	}
	return false
}
