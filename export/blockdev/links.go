package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/daxstack/daxstack/export/linux"
)

// MapperMode says whether a Manager makes MapperDir/NAME links.
type MapperMode int

const (
	// MapperAuto makes them when the kernel has no device-mapper (no
	// /dev/mapper/control), so that scripts that open /dev/mapper/NAME
	// after `dmsetup create` work unchanged.
	MapperAuto MapperMode = iota
	// MapperOn always makes them.
	MapperOn
	// MapperOff never does.
	MapperOff
)

// ParseMapperMode parses "auto", "on" or "off".
func ParseMapperMode(s string) (MapperMode, error) {
	switch s {
	case "auto":
		return MapperAuto, nil
	case "on":
		return MapperOn, nil
	case "off":
		return MapperOff, nil
	}
	return 0, fmt.Errorf("mapper links %q: want auto, on or off: %w", s, ErrInvalid)
}

func (m MapperMode) String() string {
	switch m {
	case MapperAuto:
		return "auto"
	case MapperOn:
		return "on"
	case MapperOff:
		return "off"
	}
	return fmt.Sprintf("MapperMode(%d)", int(m))
}

// LinkError is an export refused because a link name is taken by
// something that is not daxstack's.
type LinkError struct {
	Path string
	What string // what is there: "a regular file", "a link to /dev/sda", ...
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s exists and is not daxstack's (%s)", e.Path, e.What)
}

// Is makes a LinkError match ErrLinkTaken (and EEXIST).
func (e *LinkError) Is(target error) bool {
	return target == ErrLinkTaken || target == syscall.EEXIST
}

// linkState is what is at a link path.
type linkState int

const (
	linkFree    linkState = iota // nothing
	linkStale                    // a link of daxstack's that serves nothing: replace it
	linkForeign                  // something else
)

// linkOwner decides which loops' links are daxstack's.
type linkOwner struct {
	// leftover reports a loop of a dead daemon of the same mount.
	leftover func(linux.LoopInfo) bool
	// mine is the loop of the export the link is for (zero: none yet).
	mine linux.Dev
}

// inspectLink says what is at path: free, a stale link of daxstack's (to a
// detached loop device, to a dead daemon's loop, or already to the
// export's own loop), or something else, described.
func inspectLink(path string, o linkOwner) (linkState, string, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return linkFree, "", nil
	}
	if err != nil {
		return linkForeign, "", err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return linkForeign, "a " + describeMode(fi.Mode()), nil
	}
	target, err := os.Readlink(path)
	if err != nil {
		return linkForeign, "", err
	}
	what := "a link to " + target
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(path), target)
	}
	d, err := linux.BlockDevOf(target)
	if err != nil || d.Major != loopMajor {
		return linkForeign, what, nil
	}
	if o.mine != (linux.Dev{}) && d == o.mine {
		return linkStale, what, nil
	}
	st, err := linux.LoopStatus(target)
	switch {
	case errors.Is(err, linux.ErrNotAttached):
		return linkStale, what + " (detached)", nil
	case err == nil && o.leftover != nil && o.leftover(st):
		return linkStale, what + " (a dead daemon's)", nil
	}
	return linkForeign, what, nil
}

// loopMajor is the loop driver's block major (LOOP_MAJOR).
const loopMajor = 7

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "block device"
	}
	return strings.TrimSpace(m.Type().String()) + " file"
}

// makeLink points path at target, replacing a stale link atomically.
func makeLink(target, path string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".daxstack-tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removeLink removes path if it is a symlink to target.
func removeLink(path, target string) error {
	t, err := os.Readlink(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || t != target {
		return err // not ours any more: leave it
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
