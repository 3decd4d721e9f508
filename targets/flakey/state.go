package flakey

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/daxstack/daxstack/stack"
)

// The saved state, version 1: when the clock started.
//
//	byte     version (1)
//	8 bytes  CLOCK_BOOTTIME at the start, in nanoseconds, big-endian
//	uvarint  length of the boot ID (at most maxBootID)
//	bytes    the boot ID (/proc/sys/kernel/random/boot_id) of that boot
//
// Restore refuses anything else.
const (
	stateV1   = 1
	maxBootID = 64
)

// State returns the clock's start and its boot.
func (f *flakey) State() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]byte, 0, 1+8+1+len(f.bootID))
	out = append(out, stateV1)
	out = binary.BigEndian.AppendUint64(out, uint64(f.began))
	out = binary.AppendUvarint(out, uint64(len(f.bootID)))
	return append(out, f.bootID...)
}

// Restore takes the saved clock if it was started in this boot. A clock
// of an earlier boot is over, as a kernel table does not outlive a
// reboot: the clock starts again now, as it would when the table is
// loaded again, and State returns the new start (which the engine must
// save, since it differs from what it restored). A state it cannot read
// changes nothing.
func (f *flakey) Restore(state []byte) error {
	began, boot, err := decode(state)
	if err != nil {
		return err
	}
	now, current := f.clock.Boottime(), f.clock.BootID()
	f.mu.Lock()
	defer f.mu.Unlock()
	if boot == current {
		f.began = began
	} else {
		f.began = now
	}
	f.bootID = current
	return nil
}

func decode(state []byte) (time.Duration, string, error) {
	bad := func(why string) error {
		return fmt.Errorf("flakey: saved state: %s: %w", why, stack.ErrInvalid)
	}
	if len(state) < 10 {
		return 0, "", bad(fmt.Sprintf("%d bytes", len(state)))
	}
	if state[0] != stateV1 {
		return 0, "", bad(fmt.Sprintf("version %d", state[0]))
	}
	began := binary.BigEndian.Uint64(state[1:9])
	if began > 1<<63-1 {
		return 0, "", bad("start out of range")
	}
	n, k := binary.Uvarint(state[9:])
	if k <= 0 || n > maxBootID || uint64(len(state)-9-k) != n {
		return 0, "", bad("boot ID unreadable")
	}
	return time.Duration(began), string(state[9+k:]), nil
}
