package blockdev

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/linux"
)

// Usage is who uses an export's block device or device file, as far as
// the kernel shows it.
type Usage struct {
	// Mounts are the mount points of filesystems mounted from the block
	// device (in this process's mount namespace).
	Mounts []string
	// Holders are the devices stacked on it (sysfs holders/).
	Holders []string
	// Exclusive: a process holds the block device with O_EXCL (or a
	// filesystem in another mount namespace is mounted from it).
	Exclusive bool
	// FileUsers counts clients' opens of the device file.
	FileUsers int
	// Claimed: daxstack itself holds the block device (Claim) for a table
	// that uses the device. It does not make the export busy: the engine
	// knows its own tables.
	Claimed bool
}

// InUse reports whether anything but daxstack uses the device.
func (u Usage) InUse() bool {
	return len(u.Mounts) > 0 || len(u.Holders) > 0 || u.Exclusive || u.FileUsers > 0
}

func (u Usage) String() string {
	var p []string
	if len(u.Mounts) > 0 {
		p = append(p, "mounted on "+strings.Join(u.Mounts, ", "))
	}
	if len(u.Holders) > 0 {
		p = append(p, "held by "+strings.Join(u.Holders, ", "))
	}
	if u.Exclusive {
		p = append(p, "open exclusively by another process")
	}
	if u.FileUsers > 0 {
		p = append(p, fmt.Sprintf("device file open by %d client(s)", u.FileUsers))
	}
	if len(p) == 0 {
		return "not in use"
	}
	return strings.Join(p, "; ")
}

// BusyError is a refusal because the device is in use.
type BusyError struct {
	Name  string
	Usage Usage
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("device %s is in use: %s", e.Name, e.Usage)
}

// Is makes a BusyError match ErrBusy (and EBUSY).
func (e *BusyError) Is(target error) bool { return target == ErrBusy || target == syscall.EBUSY }

// Usage returns who uses the export of name.
func (m *Manager) Usage(name string) (Usage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return Usage{}, fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	return m.usage(e)
}

func (m *Manager) usage(e *export) (Usage, error) {
	var u Usage
	mounts, err := linux.MountsOf(e.Loop.Dev)
	if err != nil {
		return Usage{}, err
	}
	for _, mt := range mounts {
		u.Mounts = append(u.Mounts, mt.Point)
	}
	if h, err := linux.Holders(e.Loop.Dev); err == nil {
		u.Holders = h
	}
	u.Claimed = e.claim != nil
	if len(u.Mounts) == 0 && !u.Claimed {
		// The probe is itself exclusive for its moment; skip it when a
		// mount already says the device is busy, or when our claim would
		// make it fail.
		err := linux.ProbeExclusive(e.Loop.Path)
		switch {
		case errors.Is(err, linux.ErrHeld):
			u.Exclusive = true
		case err != nil:
			return Usage{}, err
		}
	}
	n, err := m.fs.Users(e.Name)
	if err != nil && !errors.Is(err, devfs.ErrNotFound) {
		return Usage{}, err
	}
	u.FileUsers = n
	return u, nil
}

// Openers counts the users of name's block device that can be seen
// without probing: filesystems mounted from it, devices stacked on it
// (sysfs holders) and clients' opens of its device file. An exclusive
// opener that is none of these is seen only by Usage's probe. It takes
// only the index lock, so the engine may call it with its own lock held.
func (m *Manager) Openers(name string) (int, error) {
	e := m.get(name)
	if e == nil {
		return 0, fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	mounts, err := linux.MountsOf(e.Loop.Dev)
	if err != nil {
		return 0, err
	}
	n := len(mounts)
	if h, err := linux.Holders(e.Loop.Dev); err == nil {
		n += len(h)
	}
	files, err := m.fs.Users(e.Name)
	if err != nil && !errors.Is(err, devfs.ErrNotFound) {
		return 0, err
	}
	return n + files, nil
}

// Claim holds the block device of name open with O_EXCL until Unclaim (or
// Remove): while a table above uses the device, its block device can't be
// mounted or opened exclusively. A device in use is refused with a
// *BusyError. Claiming a claimed device is a no-op.
func (m *Manager) Claim(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if e.claim != nil {
		return nil
	}
	f, err := linux.OpenExclusive(e.Loop.Path)
	if errors.Is(err, linux.ErrHeld) {
		u, uerr := m.usage(e)
		if uerr != nil {
			u = Usage{Exclusive: true}
		}
		return &BusyError{Name: name, Usage: u}
	}
	if err != nil {
		return err
	}
	m.idx.Lock()
	e.claim = f
	e.Claimed = true
	m.idx.Unlock()
	return nil
}

// Unclaim closes the claim of Claim.
func (m *Manager) Unclaim(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if e.claim == nil {
		return nil
	}
	err := e.claim.Close()
	m.idx.Lock()
	e.claim = nil
	e.Claimed = false
	m.idx.Unlock()
	return err
}

// Freeze freezes the filesystem mounted from the block device of name
// (FIFREEZE on its mount point), for a suspend that locks the filesystem,
// and returns the mount point ("" when nothing is mounted: there is
// nothing to freeze). A filesystem someone else froze is left as it is
// (and not thawed by Thaw). Freeze before suspending the device: freezing
// writes the filesystem back through it.
func (m *Manager) Freeze(name string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return "", fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if e.Frozen != "" {
		return e.Frozen, nil
	}
	mounts, err := linux.MountsOf(e.Loop.Dev)
	if err != nil || len(mounts) == 0 {
		return "", err
	}
	// Bind mounts share one superblock: freezing one freezes it.
	p := mounts[0].Point
	err = linux.Freeze(p)
	if errors.Is(err, syscall.EBUSY) {
		return "", nil // frozen already, by someone else
	}
	if err != nil {
		return "", err
	}
	m.idx.Lock()
	e.Frozen = p
	m.idx.Unlock()
	return p, nil
}

// Thaw thaws what Freeze froze (FITHAW); a no-op if it froze nothing.
func (m *Manager) Thaw(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.get(name)
	if e == nil {
		return fmt.Errorf("block device of %s: %w", name, ErrNotFound)
	}
	if e.Frozen == "" {
		return nil
	}
	err := linux.Thaw(e.Frozen)
	if errors.Is(err, syscall.EINVAL) {
		err = nil // thawed by someone else meanwhile
	}
	if err == nil {
		m.idx.Lock()
		e.Frozen = ""
		m.idx.Unlock()
	}
	return err
}
