package store

import (
	"encoding/json"
	"time"

	"github.com/daxstack/daxstack/extent"
)

// DeviceRecord is a mapped device as stored in the devices bucket, keyed
// by Name. Tables are the text dmsetup prints for them, one segment per
// line, re-parsed by the engine when it loads.
type DeviceRecord struct {
	Name      string  `json:"name"`
	UUID      string  `json:"uuid"`
	Minor     uint32  `json:"minor"`
	Active    *string `json:"active"`   // live table; nil: no table loaded
	Inactive  *string `json:"inactive"` // table loaded but not resumed; nil: none
	Suspended bool    `json:"suspended"`
	ReadOnly  bool    `json:"read_only"`
	EventNr   uint64  `json:"event_nr"`
	// Pristine is the active table as the user loaded it, before error
	// ranges were spliced into it; nil when nothing was spliced.
	Pristine    *string    `json:"pristine"`
	ErrorRanges extent.Set `json:"error_ranges"` // sectors spliced to error segments
	Created     time.Time  `json:"created"`
	// ActiveState and InactiveState are the saved state of the stateful
	// targets (stack.Stateful) of each table slot, restored when the
	// tables are rebuilt; empty when no target has state.
	ActiveState   []TargetState `json:"active_state,omitempty"`
	InactiveState []TargetState `json:"inactive_state,omitempty"`
	// DeferredRemove: `remove --deferred` found the device in use; it is
	// removed when its last user goes.
	DeferredRemove bool `json:"deferred_remove,omitempty"`
}

// TargetState is the saved state of one stateful segment of a table, in
// the target's own encoding.
type TargetState struct {
	Segment int    `json:"segment"` // index of the segment in its table
	Start   uint64 `json:"start"`   // the segment's first sector, checked when restoring
	Type    string `json:"type"`    // the segment's target type, checked when restoring
	State   []byte `json:"state"`
}

// LeafRecord is a leaf as stored in the leaves bucket, keyed by ID, so the
// engine can find it again (or know it is lost) on the next load.
type LeafRecord struct {
	ID   string `json:"id"`
	Ref  string `json:"ref"`  // how tables refer to it: a path or major:minor
	Path string `json:"path"` // where it was opened
	Name string `json:"name"`
	Kind string `json:"kind"` // pmem, devdax, block, file
	Size uint64 `json:"size"` // in 512-byte sectors
	// Identity is what identifies the leaf across reboots (serial, UUID,
	// inode...), as JSON the dax layer defines; empty when not known.
	Identity  json.RawMessage `json:"identity,omitempty"`
	Lost      bool            `json:"lost"`
	LostSince time.Time       `json:"lost_since"`
	// Shrunk is how many of the leaf's last sectors were past its end
	// when a rescan last looked (the file or device got smaller under its
	// tables): [Size-Shrunk, Size) read as failed, and were reported so.
	Shrunk uint64 `json:"shrunk,omitempty"`
}

// HolderRecord is an external holder's exclusive claim on a device, as
// stored in the holders bucket, keyed by Device.
type HolderRecord struct {
	Device string    `json:"device"` // the mapped device name or leaf reference claimed
	Holder string    `json:"holder"` // who claims it, as given by the claimant
	PID    int       `json:"pid"`    // the claiming process, 0 if none
	Since  time.Time `json:"since"`
}
