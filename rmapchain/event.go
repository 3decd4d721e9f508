package rmapchain

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// Kind says what happened to a device's sectors.
type Kind string

// The kinds of failure events.
const (
	// MediaError: sectors became bad (poison found or injected, or an
	// error segment loaded).
	MediaError Kind = "media-error"
	// Cleared: bad sectors became good (poison cleared by a write, an
	// error segment removed).
	Cleared Kind = "cleared"
	// Lost: a leaf disappeared; all of its sectors read as failed.
	Lost Kind = "lost"
	// Restored: a lost leaf came back.
	Restored Kind = "restored"
	// PreRemove: a leaf is about to be removed in an orderly way (the
	// kernel's MF_MEM_PRE_REMOVE); holders should stop using it.
	PreRemove Kind = "pre-remove"
)

// Event is one change of one device's bad ranges, with the change at the
// source that caused it. Ranges are in the device's own sectors; strided
// runs carry a stride and a count in JSON.
type Event struct {
	Seq    uint64     `json:"seq"`
	Time   time.Time  `json:"time"`
	Kind   Kind       `json:"kind"`
	Device string     `json:"device"`
	Ranges extent.Set `json:"ranges"`
	Cause  Cause      `json:"cause"`

	// Files, FilesTruncated and Metadata are set only on the follow-up
	// events of kind "files" that the daemon streams to peers allowed to
	// administer, after an event of a device with a mounted filesystem
	// (see package service); they are never logged. Files holds the file
	// rows the event's ranges hit (package fsfiles's FileRow, bytes of
	// each file), at most 1000 and then FilesTruncated; Metadata its
	// metadata rows.
	Files          json.RawMessage `json:"files,omitempty"`
	FilesTruncated bool            `json:"files_truncated,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// Cause is the change at the source device.
type Cause struct {
	Device string     `json:"device"`
	Ranges extent.Set `json:"ranges"`
}

// DevName names a device in events and reports: a mapped device by name, a
// leaf by LeafName.
func DevName(d *stack.Dev) string {
	if md := d.Mapped(); md != nil {
		return md.Name()
	}
	return LeafName(d.Leaf())
}

// LeafName names a leaf in events and reports: a block device by its node
// in /dev after its kernel name (/dev/pmem0), which tells a reader more
// than the major:minor its tables print and stays the same while the
// device is lost; any other leaf by its reference (its path).
func LeafName(l interface {
	Ref() string
	Name() string
}) string {
	ref, name := l.Ref(), l.Name()
	if isDevno(ref) && name != "" && name != ref && !strings.ContainsAny(name, "/:") {
		return "/dev/" + name
	}
	return ref
}

// isDevno reports whether s is "major:minor".
func isDevno(s string) bool {
	maj, min, ok := strings.Cut(s, ":")
	digits := func(x string) bool {
		return x != "" && strings.Trim(x, "0123456789") == ""
	}
	return ok && digits(maj) && digits(min)
}

// Translate returns the events for a change of kind at source covering
// delta (sectors of source): one for source itself and one for every device
// above it whose sectors are backed by delta, lowest device first, ranges
// clipped to each device's size. Seq is left zero for the log to assign.
func Translate(g *stack.Graph, kind Kind, source *stack.Dev, delta extent.Set, now time.Time) []Event {
	if delta.Empty() {
		return nil
	}
	sets := Propagate(g, map[*stack.Dev]extent.Set{source: delta}, nil)
	cause := Cause{Device: DevName(source), Ranges: delta.Clip(0, source.Size())}
	devs := make([]*stack.Dev, 0, len(sets))
	for d := range sets {
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b *stack.Dev) int {
		return cmp.Or(cmp.Compare(g.Height(a), g.Height(b)), strings.Compare(DevName(a), DevName(b)))
	})
	var out []Event
	for _, d := range devs {
		r := sets[d].Clip(0, d.Size())
		if r.Empty() {
			continue
		}
		out = append(out, Event{Time: now, Kind: kind, Device: DevName(d), Ranges: r, Cause: cause})
	}
	return out
}
