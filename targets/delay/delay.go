// Package delay is the delay target: a linear mapping that holds reads,
// writes and flushes back for a time of their own before sending them
// on, and can send writes and flushes to devices of their own, as the
// kernel's dm-delay.
//
//	<start> <length> delay <device> <offset> <ms>
//	<start> <length> delay <device> <offset> <ms> <wdevice> <woffset> <wms>
//	<start> <length> delay <device> <offset> <ms> <wdevice> <woffset> <wms> <fdevice> <foffset> <fms>
//
// Each class of request (reads; writes, write-zeroes and discards;
// flushes) has a device, an offset and a delay in milliseconds: with
// three arguments all three classes share them, with six the writes and
// flushes share the second set, with nine each has its own. A delay of 0
// sends the class on at once. The status counts the requests of each
// class held back and not yet released ("<reads> <writes> <flushes>").
// From PreSuspend until Resume nothing is held back, as the kernel's
// presuspend flushes its delayed bios. Importing the package registers the
// target with stack.
package delay

import (
	"strconv"
	"sync"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/targets/internal/kscan"
)

func init() {
	stack.Register(stack.TargetType{Name: "delay", Version: [3]uint32{1, 3, 0}, New: New})
}

// class is a struct delay_class: where a class of request goes and how
// long it waits.
type class struct {
	dev   *stack.Dev
	start uint64
	delay uint32 // milliseconds
	ops   uint32 // held back now (guarded by delay.mu)
}

type delay struct {
	len                uint64
	argc               int
	read, write, flush class

	mu       sync.Mutex
	mayDelay bool
}

// New is the constructor: exactly 3, 6 or 9 arguments, then each class in
// turn (reads, writes, flushes), each checked in the kernel's order (the
// offset, the delay as the kernel's %u reads it, wrapping at 2^32 ms, the
// device, whose lookup keeps its errno); a class given no arguments of
// its own takes the previous set again, as the kernel parses it again.
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) != 3 && len(args) != 6 && len(args) != 9 {
		return nil, stack.Errorf("Requires exactly 3, 6 or 9 arguments", nil)
	}
	d := &delay{len: ti.Len, argc: len(args), mayDelay: true}
	sets := [3][]string{args[0:3], args[0:3], args[0:3]}
	if len(args) >= 6 {
		sets[1], sets[2] = args[3:6], args[3:6]
	}
	if len(args) == 9 {
		sets[2] = args[6:9]
	}
	for i, c := range []*class{&d.read, &d.write, &d.flush} {
		if err := c.parse(ti, sets[i]); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// parse is delay_class_ctr.
func (c *class) parse(ti *stack.TargetInfo, args []string) error {
	var ok bool
	if c.start, ok = stack.ParseSector(args[1]); !ok {
		return stack.Errorf("Invalid device sector", nil)
	}
	if c.delay, ok = kscan.Uint32(args[2]); !ok {
		return stack.Errorf("Invalid delay", nil)
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return stack.Errorf("Device lookup failed", err)
	}
	c.dev = dev
	return nil
}

// classOf is delay_map's choice: a read is a read; every other request
// is a write to dm-delay, a flush (REQ_PREFLUSH) of the flush class, the
// rest of the write class.
func (d *delay) classOf(op stack.Op) *class {
	switch op {
	case stack.OpRead:
		return &d.read
	case stack.OpFlush:
		return &d.flush
	}
	return &d.write
}

// Map is the read class's placement: where a sector's data is read from,
// the placement every walk that is not I/O follows (map, rmap, bad
// ranges).
func (d *delay) Map(off uint64) (stack.Mapping, error) { return d.read.mapping(d.len, off), nil }

// MapOp is the placement of a request of kind op: its class's device at
// its class's offset. It is what the I/O path must use instead of Map
// for writes, write-zeroes, discards and flushes when the table gives
// them a device of their own (see the package documentation).
func (d *delay) MapOp(op stack.Op, off uint64) (stack.Mapping, error) {
	return d.classOf(op).mapping(d.len, off), nil
}

func (c *class) mapping(length, off uint64) stack.Mapping {
	return stack.Mapping{Dev: c.dev, Sector: c.start + off, Run: length - off}
}

// Rmap follows the read class: bad ranges are sectors whose reads fail,
// and reads go to the read device. The write and flush devices hold no
// data that is read through this segment.
func (d *delay) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != d.read.dev {
		return extent.Set{}
	}
	return s.Clip(d.read.start, d.read.start+d.len).Shift(-int64(d.read.start))
}

// Areas are the three classes' ranges, as delay_iterate_devices reports
// them (each is checked against its device's size), once each.
func (d *delay) Areas() []stack.Area {
	out := make([]stack.Area, 0, 3)
	for _, c := range []*class{&d.read, &d.write, &d.flush} {
		a := stack.Area{Dev: c.dev, Start: c.start, Len: d.len}
		dup := false
		for _, b := range out {
			dup = dup || a == b
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

// Table prints the classes the table gave: the read class, the write
// class with six or nine arguments, the flush class with nine.
func (d *delay) Table() string { return d.params(0) }

func (d *delay) params(off uint64) string {
	out := d.read.params(off)
	if d.argc >= 6 {
		out += " " + d.write.params(off)
	}
	if d.argc >= 9 {
		out += " " + d.flush.params(off)
	}
	return out
}

func (c *class) params(off uint64) string {
	return c.dev.Ref() + " " + strconv.FormatUint(c.start+off, 10) + " " + strconv.FormatUint(uint64(c.delay), 10)
}

// Status is "<reads> <writes> <flushes>": the requests held back now.
func (d *delay) Status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strconv.FormatUint(uint64(d.read.ops), 10) + " " + strconv.FormatUint(uint64(d.write.ops), 10) + " " + strconv.FormatUint(uint64(d.flush.ops), 10)
}

// Split: any cut of a delay segment is a delay segment whose classes'
// offsets all move by the cut's start.
func (d *delay) Split(off, n uint64) (string, error) { return d.params(off), nil }

// Hold is delay_bio: a request of a class with a delay, while the target
// may delay, waits for it and counts as held back until release. With no
// delay, or from PreSuspend until Resume, it goes on at once, uncounted.
func (d *delay) Hold(b *stack.Bio) (time.Duration, func()) {
	c := d.classOf(b.Op)
	if c.delay == 0 {
		return 0, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mayDelay {
		return 0, nil
	}
	c.ops++
	var once sync.Once
	return time.Duration(c.delay) * time.Millisecond, func() {
		once.Do(func() {
			d.mu.Lock()
			c.ops--
			d.mu.Unlock()
		})
	}
}

// PreSuspend stops the delaying (delay_presuspend): the engine lets the
// held requests go at once.
func (d *delay) PreSuspend() {
	d.mu.Lock()
	d.mayDelay = false
	d.mu.Unlock()
}

// PostSuspend does nothing: dm-delay has no postsuspend.
func (d *delay) PostSuspend() {}

// Resume lets the target delay again (delay_resume).
func (d *delay) Resume() {
	d.mu.Lock()
	d.mayDelay = true
	d.mu.Unlock()
}
