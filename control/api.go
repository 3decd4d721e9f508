package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
)

// Caller runs named commands: an Engine in this process, or the daemon
// through its socket. Params and the result are JSON.
type Caller interface {
	Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

// Do calls method through c with a typed request and result.
func Do[Resp any](ctx context.Context, c Caller, method string, req any) (Resp, error) {
	var resp Resp
	params, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	out, err := c.Call(ctx, method, params)
	if len(out) > 0 {
		if uerr := json.Unmarshal(out, &resp); uerr != nil && err == nil {
			err = uerr
		}
	}
	return resp, err
}

// Method describes one named command.
type Method struct {
	Name    string
	Mutates bool // changes state: needs write access (root or the daemon's group)
	call    func(ctx context.Context, e *Engine, params json.RawMessage) (any, error)
	// Stateless methods need no engine or database (version, targets):
	// see CallStateless.
	Stateless bool
	// unlocked methods manage the engine lock themselves (I/O).
	unlocked bool
}

var methods = map[string]Method{}

func register[Req any, Resp any](name string, mutates bool, fn func(e *Engine, ctx context.Context, req Req) (Resp, error)) {
	methods[name] = Method{Name: name, Mutates: mutates, call: func(ctx context.Context, e *Engine, params json.RawMessage) (any, error) {
		var req Req
		if len(params) > 0 {
			if err := json.Unmarshal(params, &req); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrUsage, name, err)
			}
		}
		return fn(e, ctx, req)
	}}
}

// registerStateless registers a method that needs no state.
func registerStateless[Resp any](name string, fn func() Resp) {
	methods[name] = Method{Name: name, Stateless: true, call: func(context.Context, *Engine, json.RawMessage) (any, error) {
		return fn(), nil
	}}
}

// CallStateless runs a method that needs no engine (Method.Stateless), so
// that `daxstack version` and `targets` answer even without a database, or
// with one this binary cannot open.
func CallStateless(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	m, ok := methods[method]
	if !ok || !m.Stateless {
		return nil, fmt.Errorf("%w: %q needs the engine", ErrUsage, method)
	}
	res, err := m.call(ctx, nil, params)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Lookup returns the named method.
func Lookup(name string) (Method, bool) {
	m, ok := methods[name]
	return m, ok
}

// Methods returns the names of all methods, sorted.
func Methods() []string {
	out := make([]string, 0, len(methods))
	for n := range methods {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Call runs a named command on the engine. A command's result is returned
// even when it also returns an error (a read that failed half way returns
// the bytes it read).
func (e *Engine) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	m, ok := methods[method]
	if !ok {
		return nil, fmt.Errorf("%w: no command %q", ErrUsage, method)
	}
	if m.Mutates && e.cfg.ReadOnly {
		return nil, fmt.Errorf("%w: %s changes state", ErrReadOnly, method)
	}
	res, err := e.run(ctx, m, params)
	if res == nil {
		return nil, err
	}
	out, merr := json.Marshal(res)
	if merr != nil && err == nil {
		err = merr
	}
	return out, err
}

// run runs a method under the engine lock (unless it manages the lock
// itself). A panic is a bug, never an answer to input: it becomes an
// ErrInternal error, the lock is released, and the pool is rebuilt from
// the store, since the command may have changed it half way.
func (e *Engine) run(ctx context.Context, m Method, params json.RawMessage) (res any, err error) {
	if !m.unlocked {
		e.mu.Lock()
		defer e.mu.Unlock()
	}
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		res, err = nil, fmt.Errorf("%w: %s: %v", ErrInternal, m.Name, r)
		if !m.unlocked {
			e.op = nil
			if lerr := e.load(); lerr != nil {
				err = errors.Join(err, lerr)
			}
		}
	}()
	return m.call(ctx, e, params)
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

// RemoveReq removes a device.
type RemoveReq struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
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

// MaxIO is the most bytes one read or write request moves; clients
// split larger transfers (the daemon's protocol lines are sized for it).
const MaxIO = 4 << 20

// IOReq is a read or a write through a device. Offset and Length are bytes.
type IOReq struct {
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	Length int    `json:"length,omitempty"`
	Data   []byte `json:"data,omitempty"`
}

// IOResp is what a read returned, or how much a write wrote.
type IOResp struct {
	N    int    `json:"n"`
	Data []byte `json:"data,omitempty"`
}

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
	Open      int      `json:"open"` // mapped devices using it, plus a holder
	Events    uint64   `json:"events"`
	Targets   int      `json:"targets"` // segments of the live table
	Size      uint64   `json:"size"`    // sectors
	Types     []string `json:"target_types"`
	Deps      []DevRef `json:"deps"`
	Holder    string   `json:"holder,omitempty"`
	Lost      []string `json:"lost_leaves,omitempty"` // lost leaves below: degraded
	Broken    string   `json:"broken,omitempty"`      // stored table that no longer loads
	Bad       uint64   `json:"bad_sectors"`
}

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

// DeviceRanges is a set of sectors of one device.
type DeviceRanges struct {
	Device string     `json:"device"`
	Ranges extent.Set `json:"ranges"`
}
