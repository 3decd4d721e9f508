package control

import (
	"context"
	"fmt"
	"io"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
)

// API is daxstack's engine as a Go interface: one method per command, with
// typed requests and results. *Engine implements it in this process,
// *Local implements it for a command-line process (an engine opened for
// each call), and the daemon's client (service.Client) implements it
// through the socket, so the CLI is written once against it. Errors are
// the same in every form (OpError, stack.TableError, stack.IOError and
// the sentinels, matchable with errors.Is), and so is their text.
//
// Every method honours its context: a command waiting for I/O in flight
// (a suspend, a resume that swaps tables, a remove) or for another command
// on the same device gives up when it ends, changing nothing.
type API interface {
	Version(ctx context.Context) (VersionResp, error)
	Targets(ctx context.Context) ([]TargetTypeInfo, error)

	// Device lifecycle, as dmsetup's verbs.
	Create(ctx context.Context, r CreateReq) error
	CreateConcise(ctx context.Context, r ConciseReq) error
	Load(ctx context.Context, r LoadReq) error
	Resume(ctx context.Context, r SuspendReq) error
	Suspend(ctx context.Context, r SuspendReq) error
	Clear(ctx context.Context, r NameReq) error
	WipeTable(ctx context.Context, r NameReq) error
	Remove(ctx context.Context, r RemoveReq) error
	RemoveAll(ctx context.Context, r RemoveReq) error
	Rename(ctx context.Context, r RenameReq) error
	Message(ctx context.Context, r MessageReq) (MessageResp, error)

	// Failure injection.
	Inject(ctx context.Context, r RangeReq) (InjectResp, error)
	ClearErrors(ctx context.Context, r RangeReq) (InjectResp, error)
	ErrorRange(ctx context.Context, r RangeReq) error
	GoodRange(ctx context.Context, r RangeReq) error

	// Claims by external holders.
	Claim(ctx context.Context, r ClaimReq) (ClaimResp, error)
	Release(ctx context.Context, r ClaimReq) error

	// Reports.
	List(ctx context.Context) ([]DeviceInfo, error)
	Info(ctx context.Context, r NameReq) (DeviceInfo, error)
	Table(ctx context.Context, r TableReq) (TableResp, error)
	Status(ctx context.Context, r TableReq) (TableResp, error)
	Map(ctx context.Context, r RangeReq) ([]MapPiece, error)
	Rmap(ctx context.Context, r RangeReq) ([]DeviceRanges, error)
	Badblocks(ctx context.Context, r NameReq) (DeviceRanges, error)
	Events(ctx context.Context, r EventsReq) (EventsResp, error)
	Canonical(ctx context.Context, r NamesReq) ([]string, error)
	// Files: what a device's bad ranges hit on its mounted filesystem.
	Files(ctx context.Context, r FilesReq) (FilesResp, error)

	// Leaves.
	Rescan(ctx context.Context) (RescanResp, error)
	PreRemove(ctx context.Context, r NameReq) (PreRemoveResp, error)
	Offline(ctx context.Context, r NameReq) (SeqResp, error)
	// Leaves reports every leaf a table uses: how it is reached (its
	// access mode), whether it is lost, its poison.
	Leaves(ctx context.Context) ([]LeafInfo, error)

	// Open opens a device (mapped or a leaf) for I/O as a user: the
	// handle holds it open (info's Open count) until Close, and remove
	// refuses it as busy meanwhile.
	Open(ctx context.Context, r OpenReq) (Handle, error)
}

// Handle is an open device: byte-addressed I/O through its stack. It is
// safe for use by many goroutines at once. ReadAt and WriteAt have
// io.ReaderAt and io.WriterAt semantics (a read stops at the end of the
// device with io.EOF; a write past it fails with ENOSPC); a failing sector
// gives a *stack.IOError. The Context forms give up when ctx ends (a
// request waiting for a suspended device, or held by a delay target).
//
// A write commits to the database only when it changed recorded state
// (poison it cleared, a target's state): a write that changes nothing
// recorded costs no commit.
type Handle interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
	WriteAtContext(ctx context.Context, p []byte, off int64) (int, error)
	// WriteZeroes writes n zero bytes at off (clearing the poison it
	// covers whole, as a write does).
	WriteZeroes(ctx context.Context, off, n int64) error
	// Discard tells the device n bytes at off are unused: a hint that
	// changes neither data nor poison on leaves that do not discard.
	Discard(ctx context.Context, off, n int64) error
	// Flush makes every write completed before it durable, as each leaf
	// kind needs (msync of a mapping, fdatasync).
	Flush(ctx context.Context) error
	// Size returns the device's size in bytes now (a table swap changes it).
	Size() int64
	// ReadOnly reports whether the handle refuses writes (EROFS): opened
	// for reading, or the device is read-only.
	ReadOnly() bool
}

// OpenReq opens a device for I/O.
type OpenReq struct {
	Name  string `json:"name"`
	Write bool   `json:"write,omitempty"` // open for writing (EROFS on a read-only device)
}

// SuspendReq names a device to suspend or resume. NoLockfs skips freezing
// a filesystem mounted on it (see Hooks), as dmsetup's --nolockfs.
type SuspendReq struct {
	Name     string `json:"name"`
	NoLockfs bool   `json:"nolockfs,omitempty"`
}

// Requests and results. Sectors are 512-byte sectors; Offset and Length
// of Read/Write are bytes.

// NameReq names one device.
type NameReq struct {
	Name string `json:"name"`
}

// CreateReq creates a device; Table nil means --notable.
type CreateReq struct {
	Name     string  `json:"name"`
	UUID     string  `json:"uuid,omitempty"`
	Table    *string `json:"table,omitempty"`
	Source   string  `json:"source,omitempty"` // for "Invalid format ... of table <source>."
	ReadOnly bool    `json:"readonly,omitempty"`
}

// ConciseReq creates devices from dmsetup's concise format.
type ConciseReq struct {
	Spec string `json:"spec"`
}

// LoadReq loads a table into the inactive slot.
type LoadReq struct {
	Name   string `json:"name"`
	Table  string `json:"table"`
	Source string `json:"source,omitempty"`
}

// RemoveReq removes a device. Force replaces its table with an error table
// first; Deferred, when the device is in use, removes it when its last
// user goes instead of failing.
type RemoveReq struct {
	Name     string `json:"name"`
	Force    bool   `json:"force,omitempty"`
	Deferred bool   `json:"deferred,omitempty"`
}

// RenameReq renames a device, or sets its UUID.
type RenameReq struct {
	Name    string `json:"name"`
	New     string `json:"new"`
	SetUUID bool   `json:"setuuid,omitempty"`
}

// MessageReq sends a target message.
type MessageReq struct {
	Name   string   `json:"name"`
	Sector uint64   `json:"sector"`
	Args   []string `json:"args"`
}

// MessageResp is a target's reply.
type MessageResp struct {
	Reply string `json:"reply,omitempty"`
}

// RangeReq names a sector range of a device (mapped device or leaf).
// Count 0 with All means the whole device.
type RangeReq struct {
	Name   string `json:"name"`
	Sector uint64 `json:"sector"`
	Count  uint64 `json:"count"`
	All    bool   `json:"all,omitempty"`
}

// LeafRange is a range of a leaf.
type LeafRange struct {
	Leaf   string `json:"leaf"`
	Sector uint64 `json:"sector"`
	Count  uint64 `json:"count"`
}

// InjectResp says where an injection or a clear landed, and what could not
// be touched (sectors in error segments, or with no backing store).
type InjectResp struct {
	Leaves  []LeafRange   `json:"leaves"`
	Skipped []SkippedPart `json:"skipped,omitempty"`
}

// SkippedPart is part of a range that has no leaf below it.
type SkippedPart struct {
	Sector uint64 `json:"sector"`
	Count  uint64 `json:"count"`
	Why    string `json:"why"`
}

// MaxIO is the most bytes one request moves through the daemon's socket;
// its client splits larger transfers.
const MaxIO = 4 << 20

// ClaimReq claims or releases a device for an external holder.
type ClaimReq struct {
	Device string `json:"device"`
	Holder string `json:"holder"`
	PID    int    `json:"pid,omitempty"`
}

// EventsReq reads the event log after a sequence number.
type EventsReq struct {
	Since   uint64   `json:"since"`
	Devices []string `json:"devices,omitempty"` // empty: all
	Limit   int      `json:"limit,omitempty"`
}

// EventsResp is a page of the event log.
type EventsResp struct {
	Events []rmapchain.Event `json:"events"`
	Last   uint64            `json:"last"` // the log's last sequence number
}

// Empty is the result of commands that return nothing.
type Empty struct{}

// DevRef describes a device a table uses, for deps and trees.
type DevRef struct {
	Name   string `json:"name"`             // mapped device name, or the leaf's name
	Ref    string `json:"ref"`              // as tables print it
	Mapped bool   `json:"mapped,omitempty"` // a mapped device
	Major  uint32 `json:"major"`
	Minor  uint32 `json:"minor"`
	HasNum bool   `json:"has_devno"` // Major:Minor is meaningful (mapped or block device)
	Lost   bool   `json:"lost,omitempty"`
}

// DeviceInfo is what info, ls and the reports show about a device.
type DeviceInfo struct {
	Name      string   `json:"name"`
	UUID      string   `json:"uuid"`
	Major     uint32   `json:"major"`
	Minor     uint32   `json:"minor"`
	Suspended bool     `json:"suspended"`
	ReadOnly  bool     `json:"readonly"`
	Live      bool     `json:"live_table"`
	Inactive  bool     `json:"inactive_table"`
	Open      int      `json:"open"` // mapped devices using it, plus a holder, plus user handles
	Events    uint64   `json:"events"`
	Targets   int      `json:"targets"` // segments of the live table
	Size      uint64   `json:"size"`    // sectors
	Types     []string `json:"target_types"`
	Deps      []DevRef `json:"deps"`
	Holder    string   `json:"holder,omitempty"`
	Lost      []string `json:"lost_leaves,omitempty"` // lost leaves below: degraded
	// Shrunk are the leaves below that got smaller under their tables
	// (the sectors past their end are bad): degraded too.
	Shrunk []string `json:"shrunk_leaves,omitempty"`
	Broken string   `json:"broken,omitempty"` // stored table (or target state) that no longer loads
	Bad    uint64   `json:"bad_sectors"`
	// Conditions are the words of targets that behave other than
	// normally now (stack.Conditioner: flakey's "down"), once each.
	Conditions []string `json:"conditions,omitempty"`
	Deferred   bool     `json:"deferred_remove,omitempty"` // removed when its last user goes
	// BlockDev is the block device exporting it while the daemon runs
	// (/dev/loopN; see /dev/daxstack/NAME).
	BlockDev string `json:"blkdev,omitempty"`
}

// Degraded reports whether a leaf below the device is lost or shrank.
func (d DeviceInfo) Degraded() bool { return len(d.Lost) > 0 || len(d.Shrunk) > 0 }

// TableReq asks for a device's table or status.
type TableReq struct {
	Name     string `json:"name"`
	Inactive bool   `json:"inactive,omitempty"`
}

// SegmentInfo is one line of a table or status.
type SegmentInfo struct {
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
	Target string `json:"target"`
	Params string `json:"params"`
}

// TableResp is a table or status.
type TableResp struct {
	Name     string        `json:"name"`
	UUID     string        `json:"uuid"`
	Minor    uint32        `json:"minor"`
	ReadOnly bool          `json:"readonly"`
	Segments []SegmentInfo `json:"segments"`
}

// TargetTypeInfo is one registered target type.
type TargetTypeInfo struct {
	Name    string    `json:"name"`
	Version [3]uint32 `json:"version"`
}

// VersionResp is the version of the engine.
type VersionResp struct {
	Library string `json:"library"`
	Driver  string `json:"driver"`
}

// MapLevel is one level of the path of a range down a stack.
type MapLevel struct {
	Device      string `json:"device"`
	Sector      uint64 `json:"sector"`
	Count       uint64 `json:"count"`
	Target      string `json:"target"`
	SegStart    uint64 `json:"segment_start"`
	SegLength   uint64 `json:"segment_length"`
	Child       string `json:"child,omitempty"`
	ChildSector uint64 `json:"child_sector,omitempty"`
	Leaf        bool   `json:"leaf,omitempty"` // the child is a leaf
	Error       string `json:"error,omitempty"`
}

// MapPiece is a part of a range that stays contiguous all the way down.
type MapPiece struct {
	Sector uint64     `json:"sector"`
	Count  uint64     `json:"count"`
	Levels []MapLevel `json:"levels"`
}

// ClaimResp names the claimed device as events name it.
type ClaimResp struct {
	Device string `json:"device"`
}

// NamesReq lists device names.
type NamesReq struct {
	Names []string `json:"names"`
}

// RescanResp says what a rescan found.
type RescanResp struct {
	Lost     []string `json:"lost,omitempty"`
	Restored []string `json:"restored,omitempty"`
	Changed  []string `json:"badblocks_changed,omitempty"` // leaves whose sysfs badblocks changed
	// Shrunk are leaves that got smaller under their tables: the sectors
	// past their new end are bad. Grown are leaves that got some back.
	Shrunk []string `json:"shrunk,omitempty"`
	Grown  []string `json:"grown,omitempty"`
}

// SeqResp carries the last sequence number a command logged.
type SeqResp struct {
	Seq uint64 `json:"seq"`
}

// PreRemoveResp is what a pre-remove logged: the last sequence number,
// and the pre-remove events with theirs, so that the daemon can wait for
// each device's holder to acknowledge its own event.
type PreRemoveResp struct {
	Seq    uint64            `json:"seq"`
	Events []rmapchain.Event `json:"events,omitempty"`
}

// RemoveAllError says how many devices remove_all could not remove.
type RemoveAllError struct {
	Count int
	Errs  []error
}

func (e *RemoveAllError) Error() string {
	return fmt.Sprintf("Unable to remove %d device(s).", e.Count)
}

// Unwrap returns the individual failures.
func (e *RemoveAllError) Unwrap() []error { return e.Errs }

// DeviceRanges is a set of sectors of one device.
type DeviceRanges struct {
	Device string     `json:"device"`
	Ranges extent.Set `json:"ranges"`
}
