package stack

import (
	"fmt"
	"slices"
	"sync"

	"github.com/daxstack/daxstack/extent"
)

// Target maps one segment of a table. Offsets given to and returned by a
// target are relative to the start of its segment, as with the kernel's
// dm_target_offset.
//
// The property every target must keep: for every sector s of the segment
// that Map sends to a child, Rmap(child, {child sector}) contains s; and
// every sector Rmap returns maps back into the child sectors it was given.
type Target interface {
	// Map returns where sector off lives. Mapping.Run says how many sectors
	// from off stay contiguous on that child, so callers split I/O at chunk
	// and segment boundaries. A target whose I/O must fail returns ErrKill
	// and a Mapping whose Run covers the failing sectors.
	Map(off uint64) (Mapping, error)
	// Rmap returns the sectors of the segment that map into the given
	// sectors of child. Sectors of child the segment does not use are
	// ignored.
	Rmap(child *Dev, sectors extent.Set) extent.Set
	// Areas returns the child ranges the segment uses (iterate_devices).
	Areas() []Area
	// Table returns the parameters `dmsetup table` prints after the type.
	Table() string
	// Status returns the parameters `dmsetup status` prints after the type.
	Status() string
}

// Mapping is the result of Target.Map.
type Mapping struct {
	// Dev is the child holding the sector, or nil when the target has no
	// backing store (the zero target: reads give zeros, writes are dropped).
	Dev *Dev
	// Sector is the sector on Dev.
	Sector uint64
	// Run is the number of sectors, from the mapped one, that stay
	// contiguous on Dev (at least 1).
	Run uint64
}

// Area is a range of a child device that a segment uses.
type Area struct {
	Dev   *Dev
	Start uint64
	Len   uint64
}

// EndIOer is implemented by targets that watch the outcome of I/O they
// mapped, as the kernel's end_io does (striped counts errors per stripe).
type EndIOer interface {
	EndIO(off uint64, m Mapping, err error)
}

// Failer is implemented by targets some of whose sectors always fail,
// whatever lies below them: the error target, all of them. The reverse map
// counts these sectors as bad ranges at the target's own level.
type Failer interface {
	// Failing returns the always-failing sectors, relative to the segment.
	Failing() extent.Set
}

// Persister is implemented by targets whose printed parameters (Table)
// leave out arguments needed to build them again: the error target prints
// nothing, as the kernel does, even when it was given a device, which is
// still a dependency. StoredParams returns parameters that build the same
// target; Table.StoredText uses them.
type Persister interface {
	StoredParams() string
}

// Splitter is implemented by targets that can express part of their
// segment as a segment of its own: Split returns the parameters of a
// segment covering segment sectors [off, off+n) that maps them exactly as
// this one does (linear: the device and a moved offset), in the stored
// form (see Persister). ok is false when
// no such segment exists (a striped cut that is not a whole number of
// stripe rows).
type Splitter interface {
	Split(off, n uint64) (params string, ok bool)
}

// Messager is implemented by targets that accept `dmsetup message`. A
// non-empty reply is printed by the caller.
type Messager interface {
	Message(args []string) (reply string, err error)
}

// Constructor builds a target for one segment from its split arguments.
// It reports refusals with Errorf and the kernel's words, and obtains child
// devices with ti.GetDevice.
type Constructor func(ti *TargetInfo, args []string) (Target, error)

// TargetType describes a registered target type.
type TargetType struct {
	Name    string
	Version [3]uint32
	New     Constructor
}

// VersionString returns the version as dmsetup prints it, e.g. "v1.7.0".
func (t TargetType) VersionString() string {
	return fmt.Sprintf("v%d.%d.%d", t.Version[0], t.Version[1], t.Version[2])
}

var (
	registryMu sync.RWMutex
	registry   = map[string]TargetType{}
)

// Register makes a target type available to tables. It is meant to be
// called from the init function of the target's package; it panics if the
// name is empty, longer than the kernel's 15 characters, or registered twice.
func Register(t TargetType) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if t.Name == "" || len(t.Name) >= maxTypeName || t.New == nil {
		panic("stack: Register of invalid target type " + t.Name)
	}
	if _, dup := registry[t.Name]; dup {
		panic("stack: Register called twice for target type " + t.Name)
	}
	registry[t.Name] = t
}

// LookupType returns the registered target type with the given name.
func LookupType(name string) (TargetType, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	t, ok := registry[name]
	return t, ok
}

// Types returns every registered target type, sorted by name.
func Types() []TargetType {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]TargetType, 0, len(registry))
	for _, t := range registry {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b TargetType) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// maxTypeName is DM_MAX_TYPE_NAME: 16 bytes including the terminating NUL.
const maxTypeName = 16

// TargetInfo is what a constructor knows about its segment, like the
// kernel's struct dm_target.
type TargetInfo struct {
	Begin  uint64 // first sector of the segment in its table
	Len    uint64 // segment length in sectors
	Type   string // target type name
	Device string // name of the mapped device the table is for

	b *builder
}

// GetDevice resolves a device reference (a mapped device name, a
// /dev/mapper path, a leaf path, or major:minor) to the child it names, as
// the kernel's dm_get_device does. It refuses the table's own device, a
// device whose use would create a cycle, and a device claimed by a holder.
func (ti *TargetInfo) GetDevice(ref string) (*Dev, error) {
	return ti.b.getDevice(ref)
}
