package stack

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/daxstack/daxstack/extent"
)

// Target maps one segment of a table. Offsets given to and returned by a
// target are relative to the start of its segment, as with the kernel's
// dm_target_offset.
//
// A target is the user-space form of the kernel's struct target_type. The
// methods of Target are what every target has; the optional interfaces
// below add what some have, the way a target_type leaves hooks NULL.
//
// # Lifecycle
//
//   - Constructor (ctr): parses the arguments in the kernel's order, gets its
//     child devices with TargetInfo.GetDevice, and may declare a maximum I/O
//     length (TargetInfo.SetMaxIOLen). A new target has fresh state: a dust
//     target built by a `load` starts with an empty list and in bypass, a
//     flakey target's clock starts when it is built.
//   - Restore (Stateful): when a process rebuilds a stored table (every
//     embedded command, a restarted daemon), the engine gives each stateful
//     target the state saved with the device's record, so that every process
//     sees the same list and the same clock. Restore is called before the
//     table serves any I/O or message.
//   - Resume (Resumer), PreSuspend and PostSuspend (Suspender): around the
//     device's suspend and resume, as the kernel's resume, presuspend and
//     postsuspend. PreSuspend runs before the engine waits for the I/O in
//     flight; a target that holds I/O back (Delayer) lets it go from then on.
//   - I/O: Map says where a sector lives (placement, pure, used by the I/O
//     path and by every walk that is not I/O: map, inject, rmap checks). A
//     target that places some kinds of request elsewhere (delay's write
//     and flush devices) implements OpMapper, which the I/O path then asks
//     instead, Map staying the placement of reads. Targets with run-time
//     behaviour implement IOMapper, and it is called for every request
//     that reaches the segment, knowing its direction; EndIOer sees each
//     request's outcome (see Bio for how requests reach a target).
//   - Message (Messager), State (Stateful), Failing (Failer): a message may
//     change the state; the engine saves State afterwards and compares
//     Failing before and after, turning the difference into events. State
//     that I/O changes (a write that clears a dust block) is reported with
//     TargetInfo.StateChanged.
//   - Dtr (Destructor): when the table leaves the device for good (swapped
//     out at resume, the inactive slot cleared or replaced, the device
//     removed) or was built and never used. It is called once, after the
//     last I/O through the table has finished.
//
// # Concurrency
//
// Map, Rmap, Areas, Table and Status may be called from many goroutines at
// once and must not change anything. IOMapper, EndIOer, Delayer and Failer
// methods are called concurrently with each other and with Message, State
// and Status: a target with state guards it. The lifecycle calls (Restore,
// Resume, PreSuspend, PostSuspend, Dtr) are serialised by the engine.
//
// # The property every target keeps
//
// For every sector s of the segment that Map sends to a child,
// Rmap(child, {child sector}) contains s; and every sector Rmap returns maps
// back into the child sectors it was given.
type Target interface {
	// Map returns where sector off lives. Mapping.Run says how many sectors
	// from off stay contiguous on that child, so callers split I/O at chunk
	// and segment boundaries. A target whose I/O must always fail returns
	// ErrKill and a Mapping whose Run covers the failing sectors. Map has no
	// side effects; run-time behaviour belongs in IOMapper.
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

// Op is the kind of an I/O request, as the kernel's bio_op (with a flush
// as a request of its own, the way an empty REQ_PREFLUSH bio reaches a
// target).
type Op uint8

// The kinds of request.
const (
	OpRead        Op = iota // read Len bytes into Data
	OpWrite                 // write Data
	OpWriteZeroes           // write Len bytes of zeros; Data is nil (clears poison like any write)
	OpDiscard               // a hint that Len bytes are unused; Data is nil
	OpFlush                 // make earlier writes durable; Pos and Len are 0
)

// String returns the op as the kernel names it ("read", "write",
// "write-zeroes", "discard", "flush").
func (op Op) String() string {
	switch op {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpWriteZeroes:
		return "write-zeroes"
	case OpDiscard:
		return "discard"
	case OpFlush:
		return "flush"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// IsWrite reports whether op changes data (write, write-zeroes), the way
// the kernel's op_is_write does for the ops daxstack has. A discard is a
// hint and changes nothing here; a flush carries no data.
func (op Op) IsWrite() bool { return op == OpWrite || op == OpWriteZeroes }

// Bio is one I/O request as it reaches a target with run-time behaviour
// (IOMapper, Delayer, OpMapper, or an EndIOer that sees every request):
// the part of a client's request that falls in the segment, as the
// kernel's dm clones a bio for each target, before anything below splits
// it again. Positions are bytes relative to the start of the segment:
// daxstack's I/O is byte-granular, so a request need not start or end on
// a sector.
//
// How a client's request becomes Bios at such a segment, as the kernel's:
//
//   - reads and writes are cut at the segment's ends and at every
//     multiple of the segment's MaxIOLen (TargetInfo.SetMaxIOLen, counted
//     from the segment start: dust's blocks);
//   - a discard is cut at the segment's ends only (dm sends a discard
//     whole: no MaxIOLen split);
//   - a write-zeroes never reaches the target: these targets take none in
//     the kernel, so neither does any device stacked on them, and the block
//     layer writes zeros instead. The segment gets writes (OpWrite) of
//     zeros, cut as writes are and also at every 1 MiB of the client's
//     request from its start (the kernel's zero-page bios: 256 pages), so
//     that a target that counts per request (flakey's corrupt_bio_byte)
//     counts what the kernel's does;
//   - a flush is one Bio per segment (OpFlush, Pos and Len 0), as dm sends
//     one empty flush bio to each target (see IOMapper for where it goes).
//
// Requests are not cut at a largest size otherwise: the kernel's dm does
// not split reads and writes at its max_sectors_kb (it splits only at
// target boundaries and max_io_len); a bio's size is set by whoever built
// it, and daxstack's clients are that: the loop device over an exported
// file cuts at its own max_sectors_kb (1280 KiB by default, as the oracle
// guest's dm devices had), an NBD client at its own limit, the engine's
// handles at control.MaxIO. A request reaches the target as the client
// sent it.
//
// Pure segments between the client and the target (linear, striped)
// change nothing of this; a stripe above cuts at its chunks.
type Bio struct {
	Op  Op
	Pos uint64 // first byte, from the segment start
	Len uint64 // bytes
	// Data holds the bytes of a read (filled when EndIO is called) or of a
	// write; nil for the other ops. A target must not change a write's
	// bytes in place (they are the client's, or the zeros every
	// write-zeroes shares): to change them it sets Data to a copy. It may
	// change a read's bytes in EndIO.
	Data []byte
	FUA  bool // a write that must be durable when it completes
	// Private is the target's own, from the request's MapIO (or Hold) to
	// its EndIO, as the kernel's per-bio data: the engine sets it to nil
	// when it makes the Bio and never reads it (flakey marks there the
	// reads it mapped while down).
	Private any
}

// Sector returns the first sector the request touches, relative to the
// segment.
func (b *Bio) Sector() uint64 { return b.Pos / SectorSize }

// EndSector returns the sector after the last one the request touches.
func (b *Bio) EndSector() uint64 { return (b.Pos + b.Len + SectorSize - 1) / SectorSize }

// Action is what IOMapper.MapIO decides for a request, as the kernel's
// DM_MAPIO_* values.
type Action uint8

const (
	// Remap sends the request on to where Map places it (DM_MAPIO_REMAPPED).
	Remap Action = iota
	// Done completes the request here, successfully, with nothing sent
	// below (DM_MAPIO_SUBMITTED after bio_endio): a write dropped by flakey
	// is acknowledged; a read the target answered itself has Data filled.
	Done
	// Kill fails the request with the error MapIO returns, or with EIO when
	// it returns nil (DM_MAPIO_KILL).
	Kill
)

// IOMapper is implemented by targets whose I/O depends on more than the
// sector: the direction, the time, or state that I/O and messages change
// (dust, flakey). MapIO is called once for every request that reaches the
// segment (see Bio), before it goes below (and after the wait of a Delayer
// that is also an IOMapper).
//
// Remap sends the request on as MapIO left it: b.Op and b.Data are used
// from then on, so a target may send a copy of a write's bytes (flakey's
// corruption) or, were it ever given one, turn a write-zeroes into a
// write of Len bytes. Nothing else may change (Pos, Len, another op): the
// request then fails with ErrInvalid. Each part of it goes where the
// target places it (MapOp for an OpMapper, else Map); a flush (OpFlush,
// Pos and Len 0) that is remapped goes where an OpMapper's MapOp(OpFlush,
// 0) places it (delay: its flush device), or else to every device of the
// segment (Areas), once each, as a stripe sends one flush per stripe. An
// error target takes no flush.
type IOMapper interface {
	MapIO(b *Bio) (Action, error)
}

// OpMapper is implemented by targets that place requests by their kind
// (delay: reads on the read device; writes, write-zeroes and discards on
// the write device; flushes on the flush device). The I/O path calls
// MapOp for every part of every request that reaches the segment, with
// the request's op as MapIO left it (OpWrite, not OpWriteZeroes: see
// Bio); Map stays the placement of reads and what every walk that is not
// I/O follows (map, rmap, bad ranges), so MapOp(OpRead, off) must equal
// Map(off). Like Map it has no side effects and may be called from many
// goroutines at once. Areas must include every range MapOp uses.
type OpMapper interface {
	MapOp(op Op, off uint64) (Mapping, error)
}

// EndIOer is implemented by targets that watch the outcome of the requests
// they sent below, as the kernel's end_io does: striped counts errors per
// stripe, flakey corrupts the bytes of a read. EndIO is called once per
// request, after every part of it below has finished, with the first
// error (nil on success), and with the same *Bio that Hold and MapIO were
// given, whatever happened in between (a wait the client gave up, a
// device below removed); it returns the error the request completes with.
// A request that MapIO completed itself (Done) or killed (Kill) is given to
// EndIO too, with nil or the kill's error, as the kernel's end_io sees
// every bio the target took.
type EndIOer interface {
	EndIO(b *Bio, err error) error
}

// ErrorEndIOer is an EndIOer that only needs the requests that failed
// (striped, which counts errors per stripe). Such a segment, unless it is
// also an IOMapper or a Delayer, stays on the I/O path's fast path: a
// request that succeeds costs it no call. EndIO is then called once for
// each request that failed, with its error, and must return an error
// (returning nil keeps the one it was given). EndIOErrorsOnly is a marker
// and is never called.
type ErrorEndIOer interface {
	EndIOer
	EndIOErrorsOnly()
}

// Delayer is implemented by targets that hold requests back before they go
// below (delay). Hold is called for each request, first among the calls a
// request gets at the segment; the engine keeps it waiting for the returned
// duration, then calls release (if not nil) and sends it on (to MapIO when
// the target is also an IOMapper, else where Map places it). The wait holds
// no lock and does not stop other I/O, suspends of other devices or
// commands. From the start of a suspend of the target's device (before
// PreSuspend) until its Resume, and for a device being removed, the engine
// does not make requests wait (Hold is still called, and release at once)
// and those waiting go on at once, as the kernel's presuspend flushes its
// delayed bios; a wait also ends when the client gives up (its context),
// and the request then fails with the context's error. While it waits the
// request counts as in flight for the suspend of the device and of every
// device it passed above it, as in the kernel.
type Delayer interface {
	Hold(b *Bio) (wait time.Duration, release func())
}

// Failer is implemented by targets some of whose sectors fail whatever lies
// below them: the error target, all of them; dust, its listed blocks while
// it is enabled. The reverse map counts these sectors as bad ranges at the
// target's own level. Failing must reflect the target's present state; the
// engine calls it before and after a message, and when a target reports a
// change (TargetInfo.StateChanged), to compute events.
type Failer interface {
	// Failing returns the failing sectors, relative to the segment.
	Failing() extent.Set
}

// Stateful is implemented by targets with state beyond their table text
// that must outlive the process: dust's list and mode, flakey's clock. The
// state lives with the table (a new table starts fresh) and is saved in
// the device's record, so every process and a restarted daemon see the
// same.
type Stateful interface {
	// State returns the target's state in its own encoding (a target's
	// later versions must read what earlier ones wrote).
	State() []byte
	// Restore replaces the state with one State returned earlier, from the
	// device's record. A state it cannot read is an error (the engine then
	// reports the device broken rather than guess); it must not panic.
	Restore(state []byte) error
}

// Destructor is implemented by targets that must release something when
// their table is gone (the kernel's dtr).
type Destructor interface {
	Dtr()
}

// Suspender is implemented by targets that act around their device's
// suspend (the kernel's presuspend and postsuspend). PreSuspend runs after
// new I/O has been stopped and before the engine waits for the I/O in
// flight; PostSuspend once none is left.
type Suspender interface {
	PreSuspend()
	PostSuspend()
}

// SuspendUndoer is implemented by Suspenders that must undo PreSuspend
// when the suspend does not complete (the client gave up waiting for the
// I/O in flight), as the kernel's presuspend_undo. The device then runs
// again without a Resume.
type SuspendUndoer interface {
	PreSuspendUndo()
}

// Resumer is implemented by targets that act when their table becomes
// live or their device resumes (the kernel's resume).
type Resumer interface {
	Resume()
}

// Conditioner is implemented by targets whose behaviour varies over time,
// to show it in `info` and `status` reports: Condition returns "" when the
// target behaves normally, or a word saying how it does not ("down" for
// flakey in its down interval). A condition is not a bad range: bad ranges
// are sectors that fail whatever the time.
type Conditioner interface {
	Condition() string
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
// form (see Persister). When no such segment exists it returns an error
// saying why, in words that complete "cannot be a segment of their own: "
// (a striped cut that is not a whole number of stripe rows, a target whose
// state cannot be divided); the engine refuses the cut with ErrInvalid,
// naming the sectors and the target type, and that reason. A Stateful
// target's pieces are given its state with Restore, so a piece keeps, for
// instance, flakey's clock.
type Splitter interface {
	Split(off, n uint64) (params string, err error)
}

// Messager is implemented by targets that accept `dmsetup message`. A
// non-empty reply is printed by the caller, as dmsetup prints the
// kernel's result buffer. A refused message returns an error (use Errorf
// with the kernel's log words and a cause that carries the errno, EINVAL
// by default) and changes nothing.
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

	// Clock is the clock a target with time in its behaviour reads
	// (CLOCK_BOOTTIME, as the kernel's jiffies); tests replace it. Never nil.
	Clock Clock

	rnd      *rand.Rand // see Rand
	maxIOLen uint64
	b        *builder
	// Set once the table is built, for StateChanged.
	dev   *Device
	table *Table
	seg   int
}

// Rand returns the random source of this target (for targets that corrupt
// at random), its own: no other target draws from it, so the target needs
// no lock but its own around it. It is seeded, when first asked for in the
// constructor, from the pool's source (Pool.SetTargetEnv: tests seed it, so
// that the targets of a table get the same sources from run to run, in
// the order their constructors ask). Asked for outside the constructor, or
// by a table built with no pool source, it is seeded at random.
func (ti *TargetInfo) Rand() *rand.Rand {
	if ti.rnd == nil {
		var a, b uint64
		if ti.b != nil && ti.b.p.rnd != nil { // the constructor runs with the pool locked
			a, b = ti.b.p.rnd.Uint64(), ti.b.p.rnd.Uint64()
		} else {
			a, b = rand.Uint64(), rand.Uint64()
		}
		ti.rnd = rand.New(rand.NewPCG(a, b))
	}
	return ti.rnd
}

// SetMaxIOLen asks the I/O path to split requests to this segment so that
// none crosses a multiple of n sectors counted from the segment start, as
// the kernel's dm_set_target_max_io_len (dust: one block per request).
func (ti *TargetInfo) SetMaxIOLen(n uint64) { ti.maxIOLen = n }

// MaxIOLen returns what SetMaxIOLen set, or 0 for no limit.
func (ti *TargetInfo) MaxIOLen() uint64 { return ti.maxIOLen }

// StateChanged tells the engine that the target's state changed during
// I/O (a write cleared a dust block): the state is saved with the device's
// record, and added and cleared, the sectors (relative to the segment) that
// began or stopped failing, travel up as events exactly like poison. Both
// may be empty when only the saved state changed. It may be called from the
// I/O path and never blocks.
func (ti *TargetInfo) StateChanged(added, cleared extent.Set) {
	if ti.table == nil || ti.dev == nil {
		return // a table being built, or one built to the side
	}
	if fn := ti.dev.pool.onChange.Load(); fn != nil {
		(*fn)(TargetChange{Device: ti.dev, Table: ti.table, Segment: ti.seg, Added: added, Cleared: cleared})
	}
}

// TargetChange is a target's report of a change of its state during I/O
// (TargetInfo.StateChanged), as the pool hands it to the function set with
// Pool.OnTargetChange. Added and Cleared are sectors relative to the
// segment.
type TargetChange struct {
	Device  *Device
	Table   *Table // the table the target belongs to (it may have left the device since)
	Segment int    // index of the target's segment in Table
	Added   extent.Set
	Cleared extent.Set
}

// Clock is what targets read the time from.
type Clock interface {
	// Boottime returns CLOCK_BOOTTIME: time since boot, counting suspend.
	Boottime() time.Duration
	// BootID identifies the boot (/proc/sys/kernel/random/boot_id), so a
	// saved time can be told apart from one of an earlier boot.
	BootID() string
}

// GetDevice resolves a device reference (a mapped device name, a
// /dev/mapper path, a leaf path, or major:minor) to the child it names, as
// the kernel's dm_get_device does. It refuses the table's own device, a
// device whose use would create a cycle, and a device claimed by a holder.
// It may only be called from the constructor.
func (ti *TargetInfo) GetDevice(ref string) (*Dev, error) {
	if ti.b == nil {
		return nil, fmt.Errorf("%w: GetDevice(%q) outside the constructor", ErrInvalid, ref)
	}
	return ti.b.getDevice(ref)
}
