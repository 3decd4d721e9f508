// Package flakey is the flakey target: a linear mapping that is up for a
// while and then down for a while, failing, dropping or corrupting I/O
// while down, as the kernel's dm-flakey (mainline's features).
//
//	<start> <length> flakey <device> <offset> <up> <down> [<#feature args> <feature args>...]
//
// The features: error_reads, drop_writes, error_writes,
// corrupt_bio_byte <Nth byte, from 1> <r|w> <value 0-255> <flags mask>,
// random_read_corrupt <P>, random_write_corrupt <P> (P out of 10^9).
// With none, the down interval fails reads and writes (the table then
// prints `2 error_reads error_writes`).
//
// The clock starts when the table is built, on CLOCK_BOOTTIME (the
// kernel's jiffies at the constructor); a request is down when the whole
// seconds since then, modulo up+down, are at least up. The start and the
// boot it belongs to are the target's saved state (stack.Stateful), so
// every process rebuilding the table keeps the same clock; after a reboot
// the clock starts again when the table is next built or restored, as a
// kernel table's does when it is loaded again. A down interval is a time,
// not a place: it is no failing sector (flakey is no stack.Failer), but
// Condition says "down". Importing the package registers the target with
// stack.
package flakey

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func init() {
	stack.Register(stack.TargetType{Name: "flakey", Version: [3]uint32{1, 5, 0}, New: New})
}

// config is what the table says.
type config struct {
	dev                                 *stack.Dev
	start                               uint64
	len                                 uint64
	up, down                            uint32 // seconds
	errorReads, dropWrites, errorWrites bool
	corruptByte                         uint32 // 1-based; 0 for none
	corruptWrite                        bool   // corrupt_bio_byte's direction is w
	corruptValue                        uint8
	corruptFlags                        uint32 // bi_opf mask (see flagsOf)
	randomRead, randomWrite             uint32 // out of probabilityBase
}

// probabilityBase is PROBABILITY_BASE: random_*_corrupt P is P in 10^9.
const probabilityBase = 1000000000

type flakey struct {
	config
	clock stack.Clock

	mu     sync.Mutex
	began  time.Duration // CLOCK_BOOTTIME when the clock started
	bootID string        // the boot it started in
	rnd    *rand.Rand    // this target's own source (TargetInfo.Rand)
}

// New is the constructor, with mainline's checks in its order: the
// argument count, the offset, the up and down intervals (32-bit values,
// as the kernel's %u reads them, wrapping), their sum (not 0, not
// wrapping), the features (parseFeatures), and last the device lookup,
// whose errno it keeps.
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) < 4 {
		return nil, stack.Errorf("Invalid argument count", nil)
	}
	began := ti.Clock.Boottime()
	c := config{len: ti.Len}
	var ok bool
	if c.start, ok = stack.ParseSector(args[1]); !ok {
		return nil, stack.Errorf("Invalid device sector", nil)
	}
	if c.up, ok = readArg(args[2], 0, 1<<32-1); !ok {
		return nil, stack.Errorf("Invalid up interval", nil)
	}
	if c.down, ok = readArg(args[3], 0, 1<<32-1); !ok {
		return nil, stack.Errorf("Invalid down interval", nil)
	}
	if c.up+c.down == 0 {
		return nil, stack.Errorf("Total (up + down) interval is zero", nil)
	}
	if c.up+c.down < c.up {
		return nil, stack.Errorf("Interval overflow", nil)
	}
	if err := c.parseFeatures(args[4:]); err != nil {
		return nil, err
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return nil, stack.Errorf("Device lookup failed", err)
	}
	c.dev = dev
	return &flakey{
		config: c,
		clock:  ti.Clock,
		began:  began,
		bootID: ti.Clock.BootID(),
		rnd:    ti.Rand(),
	}, nil
}

// Map is linear: being down changes what I/O does, not where it goes.
func (f *flakey) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Dev: f.dev, Sector: f.start + off, Run: f.len - off}, nil
}

// Rmap is linear's: the given sectors inside [start, start+len), moved
// back by start. A poisoned sector below is bad whatever the time.
func (f *flakey) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != f.dev {
		return extent.Set{}
	}
	return s.Clip(f.start, f.start+f.len).Shift(-int64(f.start))
}

func (f *flakey) Areas() []stack.Area {
	return []stack.Area{{Dev: f.dev, Start: f.start, Len: f.len}}
}

// Table prints mainline's table line: "<dev> <offset> <up> <down>
// <#feature args>" then the features in a fixed order, with no trailing
// space.
func (f *flakey) Table() string { return f.params(f.start) }

func (f *flakey) params(start uint64) string {
	c := &f.config
	var b strings.Builder
	b.WriteString(c.dev.Ref() + " " + strconv.FormatUint(start, 10) + " " + u32(c.up) + " " + u32(c.down))
	n := btoi(c.errorReads) + btoi(c.dropWrites) + btoi(c.errorWrites)
	if c.corruptByte > 0 {
		n += 5
	}
	if c.randomRead > 0 {
		n += 2
	}
	if c.randomWrite > 0 {
		n += 2
	}
	b.WriteString(" " + strconv.Itoa(n))
	if c.errorReads {
		b.WriteString(" error_reads")
	}
	if c.dropWrites {
		b.WriteString(" drop_writes")
	} else if c.errorWrites {
		b.WriteString(" error_writes")
	}
	if c.corruptByte > 0 {
		dir := "r"
		if c.corruptWrite {
			dir = "w"
		}
		b.WriteString(" corrupt_bio_byte " + u32(c.corruptByte) + " " + dir + " " + u32(uint32(c.corruptValue)) + " " + u32(c.corruptFlags))
	}
	if c.randomRead > 0 {
		b.WriteString(" random_read_corrupt " + u32(c.randomRead))
	}
	if c.randomWrite > 0 {
		b.WriteString(" random_write_corrupt " + u32(c.randomWrite))
	}
	return b.String()
}

// Status is empty, as the kernel's STATUSTYPE_INFO.
func (f *flakey) Status() string { return "" }

// Split: any cut of a flakey segment is a flakey segment over the device
// at the moved offset, with the same intervals and features; the engine
// gives each piece this target's state, so the pieces share its clock.
func (f *flakey) Split(off, n uint64) (string, error) { return f.params(f.start + off), nil }

// Condition is "down" in the down interval, "" in the up one.
func (f *flakey) Condition() string {
	if f.isDown() {
		return "down"
	}
	return ""
}

// isDown is flakey_map's "are we alive?": the whole seconds since the
// clock started (as the kernel's unsigned arithmetic has them), modulo
// up+down, reach up.
func (f *flakey) isDown() bool {
	now := f.clock.Boottime()
	f.mu.Lock()
	began := f.began
	f.mu.Unlock()
	elapsed := uint32(uint64(now-began) / uint64(time.Second))
	return elapsed%(f.up+f.down) >= f.up
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
