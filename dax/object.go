package dax

// Which object a reference names, for a caller that must check access to
// it before the leaf is used (the daemon, acting for a peer: it opens the
// path as the peer and then binds the leaf to what the peer's descriptor
// is).

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Resolve returns the path Open would stat for ref: the device node of a
// "major:minor" reference (through sysfs, under DevRoot), or ref made
// absolute. It opens nothing.
func (o *Opener) Resolve(ref string) (string, error) {
	if ma, mi, ok := parseDevno(ref); ok {
		path, err := o.blockNode(ma, mi)
		if err != nil {
			return "", fmt.Errorf("dax: open %s: %w", ref, err)
		}
		return path, nil
	}
	return filepath.Abs(ref)
}

// Is reports whether the leaf is the object st describes (an fstat of a
// descriptor opened on its path): the same regular file (st_dev and
// st_ino), or the same device node (character or block, and number). The
// leaf's own I/O opens its path again later and checks the same, so a leaf
// bound this way never reaches another object.
func (l *Leaf) Is(st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return l.kind == KindFile && st.Dev == l.stDev && st.Ino == l.stIno
	case unix.S_IFBLK:
		return (l.kind == KindBlock || l.kind == KindPmem) && st.Rdev == l.rdev
	case unix.S_IFCHR:
		return l.kind == KindDevdax && st.Rdev == l.rdev
	}
	return false
}

// IsDevno reports whether ref is a "major:minor" reference, which Open
// resolves through sysfs rather than as a path.
func IsDevno(ref string) bool {
	_, _, ok := parseDevno(ref)
	return ok
}
