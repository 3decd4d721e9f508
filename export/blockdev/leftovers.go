package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/daxstack/daxstack/export/linux"
)

// Leftovers is what CleanLeftovers found of a dead daemon.
type Leftovers struct {
	// Loops are the dead daemon's loop devices, detached (or marked to
	// detach at their last close).
	Loops []linux.LoopInfo
	// Deferred are those of Loops still held open (a filesystem mounted
	// from one gets EIO until it is unmounted; it must be mounted again
	// on the new export).
	Deferred []string
	// Mounts are the mount points of filesystems still mounted from them.
	Mounts []string
	// Links are the stale links removed.
	Links []string
}

// CleanLeftovers finds, before a daemon mounts devfs on mountDir, what a
// dead daemon of the same mount left: loop devices over files of that
// mount (their lo_file_name carries the mark) and links in LinkDir and
// MapperDir to those loops or to detached loop devices. It removes the
// links and detaches the loops. Loops of other users are not touched;
// only those whose backing file is under mountDir, or no longer has a path
// (a lazily unmounted or deleted file), are opened to read their mark.
func CleanLeftovers(mountDir string, o Options) (Leftovers, error) {
	o = o.withDefaults()
	dir, err := filepath.Abs(mountDir)
	if err != nil {
		return Leftovers{}, err
	}
	tag := tagPrefix(dir)
	loops, err := linux.Loops()
	if err != nil {
		return Leftovers{}, err
	}
	var left Leftovers
	stale := map[linux.Dev]bool{}
	for _, li := range loops {
		if !maybeOurs(li.BackingFile, dir) {
			continue
		}
		st, err := linux.LoopStatus(li.Path)
		if err != nil || !strings.HasPrefix(st.Tag, tag) {
			continue
		}
		left.Loops = append(left.Loops, st)
		stale[st.Dev] = true
	}
	leftover := func(li linux.LoopInfo) bool { return stale[li.Dev] }
	var errs []error
	for _, d := range []string{o.LinkDir, o.MapperDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, ent := range ents {
			p := filepath.Join(d, ent.Name())
			if ent.Type()&os.ModeSymlink == 0 {
				continue
			}
			st, _, err := inspectLink(p, linkOwner{leftover: leftover})
			if err != nil || st != linkStale {
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			left.Links = append(left.Links, p)
		}
	}
	for _, li := range left.Loops {
		mounts, _ := linux.MountsOf(li.Dev)
		for _, mt := range mounts {
			left.Mounts = append(left.Mounts, mt.Point)
		}
		deferred, err := linux.DetachLoop(li.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", li.Path, err))
		}
		if deferred {
			left.Deferred = append(left.Deferred, li.Path)
		}
	}
	return left, errors.Join(errs...)
}

// maybeOurs reports whether a loop's backing file could be a file of a
// devfs mount at dir: it is under dir, or it has no path any more.
func maybeOurs(backing, dir string) bool {
	if strings.HasPrefix(backing, dir+"/") {
		return true
	}
	if strings.HasSuffix(backing, " (deleted)") {
		return true
	}
	_, err := os.Lstat(backing)
	return err != nil
}
