package dax

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Find looks among the block devices present now for the one whose
// identity is id (Identity.Same), and returns its device node, under
// DevRoot. It is what recognises a leaf that came back under another
// number: a loop device detached and its backing file attached again
// (found by backing file and offset, whatever the loop's number and
// diskseq), a pmem namespace with its UUID; any other block device is
// only itself, at its own number with the same diskseq. The error
// matches fs.ErrNotExist when no device present is id; files and
// device-dax devices are not looked for (a file is found by its path).
//
// A device found has another number than the one recorded, so the leaf
// opened on it has another ID ("blk:7:7" for "blk:7:3"): the caller
// re-keys its records.
func (o *Opener) Find(id Identity) (string, error) {
	if id.Kind != KindBlock && id.Kind != KindPmem {
		return "", fmt.Errorf("dax: find %s: only block devices are looked for: %w", id, ErrUnsupported)
	}
	dir := filepath.Join(o.sysfs(), "dev", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("dax: find %s: %w", id, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names) // a stable answer when two devices are the same leaf
	for _, devno := range names {
		ma, mi, ok := parseDevno(devno)
		if !ok {
			continue
		}
		ue, err := readUevent(filepath.Join(dir, devno, "uevent"))
		if err != nil {
			continue
		}
		name := ue["DEVNAME"]
		if name == "" || strings.Contains(name, "..") || !o.mayBe(id, ma, mi, name) {
			continue
		}
		node := filepath.Join(o.dev(), name)
		var st syscall.Stat_t
		if syscall.Stat(node, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
			continue
		}
		// Confirm with the identity Open computes, whatever the
		// Opener's claims: looking is not using.
		look := *o
		look.Claim = ClaimNone
		l, err := look.Open(node)
		if err != nil {
			continue
		}
		same := id.Same(l.Identity())
		l.Close()
		if same {
			return node, nil
		}
	}
	return "", fmt.Errorf("dax: no block device present is %s: %w", id, fs.ErrNotExist)
}

// mayBe is the cheap test before the full one: the right kind of device.
func (o *Opener) mayBe(id Identity, ma, mi uint32, name string) bool {
	switch {
	case id.Loop:
		return loopName(name)
	case id.UUID != "":
		return pmemName(name)
	}
	return ma == id.Major && mi == id.Minor
}
