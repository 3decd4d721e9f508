package control

import (
	"context"
	"fmt"
	"slices"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// Version is daxstack's version, printed by `daxstack version`.
const Version = "0.1.0"

// Version returns the engine's version (it needs no database).
func (e *Engine) Version(context.Context) (VersionResp, error) { return VersionInfo(), nil }

// VersionInfo is what `daxstack version` prints, for any engine.
func VersionInfo() VersionResp { return VersionResp{Library: Version, Driver: Version} }

// Targets lists the registered target types (it needs no database).
func (e *Engine) Targets(context.Context) ([]TargetTypeInfo, error) { return TargetTypes(), nil }

// report runs a report under the engine lock.
func report[R any](e *Engine, fn func() (R, error)) (R, error) {
	var r R
	err := e.locked(func() error {
		var err error
		r, err = fn()
		return err
	})
	return r, err
}

// List reports every device, sorted by name.
func (e *Engine) List(context.Context) ([]DeviceInfo, error) {
	return report(e, func() ([]DeviceInfo, error) {
		var out []DeviceInfo
		for _, d := range e.pool.Devices() {
			out = append(out, e.deviceInfo(d))
		}
		return out, nil
	})
}

// Info reports one device.
func (e *Engine) Info(_ context.Context, r NameReq) (DeviceInfo, error) {
	return report(e, func() (DeviceInfo, error) {
		d, err := e.device(r.Name)
		if err != nil {
			return DeviceInfo{}, opErr("info", r.Name, nil, err)
		}
		return e.deviceInfo(d), nil
	})
}

func (e *Engine) deviceInfo(d *stack.Device) DeviceInfo {
	e.recheckSizes(d.Dev())
	in := DeviceInfo{
		Name: d.Name(), UUID: d.UUID(), Major: stack.MappedMajor, Minor: d.Minor(),
		Suspended: d.Suspended(), Live: d.Active() != nil, Inactive: d.Inactive() != nil,
		Events: d.EventNr(), Size: d.Size(), Holder: e.pool.Holder(d.Dev()),
		ReadOnly: d.ReadOnly(), Deferred: e.devs[d.Name()].DeferredRemove,
	}
	in.Open = len(e.pool.Users(d.Dev())) + d.OpenCount() + e.exportUsers(d.Name())
	if in.Holder != "" {
		in.Open++
	}
	if t := d.Active(); t != nil {
		in.Targets = len(t.Segments())
		for _, s := range t.Segments() {
			if !slices.Contains(in.Types, s.Type) {
				in.Types = append(in.Types, s.Type)
			}
			if c, ok := s.Target.(stack.Conditioner); ok {
				if w := c.Condition(); w != "" && !slices.Contains(in.Conditions, w) {
					in.Conditions = append(in.Conditions, w)
				}
			}
		}
		for _, c := range t.Devs() {
			in.Deps = append(in.Deps, e.devRef(c))
		}
	}
	if err := e.broken[d.Name()]; err != nil {
		in.Broken = err.Error()
	}
	g := e.pool.Graph()
	for _, x := range g.Descendants(d.Dev()) {
		if l := e.daxLeaf(x); l != nil && l.Lost() {
			in.Lost = append(in.Lost, l.Ref())
		} else if l, ok := l.(*dax.Leaf); ok && l.CurrentSize() < l.Size() {
			in.Shrunk = append(in.Shrunk, l.Ref())
		}
	}
	in.Bad = e.badSet(d.Dev()).Clip(0, d.Size()).Sectors()
	in.BlockDev = e.blockDev(d.Name())
	return in
}

// devRef describes a child device as deps and trees show it.
func (e *Engine) devRef(c *stack.Dev) DevRef {
	if md := c.Mapped(); md != nil {
		return DevRef{Name: md.Name(), Ref: c.Ref(), Mapped: true, Major: stack.MappedMajor, Minor: md.Minor(), HasNum: true}
	}
	r := DevRef{Name: c.Name(), Ref: c.Leaf().Ref()}
	if l := e.daxLeaf(c); l != nil {
		r.Lost = l.Lost()
		if dl, ok := l.(*dax.Leaf); ok {
			if id := dl.Identity(); id.Kind == dax.KindPmem || id.Kind == dax.KindBlock {
				r.Major, r.Minor, r.HasNum = id.Major, id.Minor, true
			}
		}
	}
	return r
}

func (e *Engine) tableOf(r TableReq, status bool) (TableResp, error) {
	d, err := e.device(r.Name)
	if err != nil {
		op := "table"
		if status {
			op = "status"
		}
		return TableResp{}, opErr(op, r.Name, nil, err)
	}
	t := d.Active()
	if r.Inactive {
		t = d.Inactive()
	}
	resp := TableResp{Name: d.Name(), UUID: d.UUID(), Minor: d.Minor(), ReadOnly: d.ReadOnly(), Segments: []SegmentInfo{}}
	for _, s := range t.Segments() {
		p := s.Target.Table()
		if status {
			p = s.Target.Status()
		}
		resp.Segments = append(resp.Segments, SegmentInfo{Start: s.Begin, Length: s.Len, Target: s.Type, Params: p})
	}
	return resp, nil
}

// Table reports a device's table (live, or Inactive).
func (e *Engine) Table(_ context.Context, r TableReq) (TableResp, error) {
	return report(e, func() (TableResp, error) { return e.tableOf(r, false) })
}

// Status reports a device's target status.
func (e *Engine) Status(_ context.Context, r TableReq) (TableResp, error) {
	return report(e, func() (TableResp, error) { return e.tableOf(r, true) })
}

// TargetTypes lists the registered target types, for any engine.
func TargetTypes() []TargetTypeInfo {
	var out []TargetTypeInfo
	for _, t := range stack.Types() {
		out = append(out, TargetTypeInfo{Name: t.Name, Version: t.Version})
	}
	return out
}

// Map returns the path of a range down its stack: one MapPiece per part
// that stays contiguous all the way down, with every level.
func (e *Engine) Map(_ context.Context, r RangeReq) ([]MapPiece, error) {
	return report(e, func() ([]MapPiece, error) { return e.mapRange(r) })
}

func (e *Engine) mapRange(r RangeReq) ([]MapPiece, error) {
	d, err := e.device(r.Name)
	if err != nil {
		return nil, opErr("", r.Name, nil, err)
	}
	if r.Count == 0 {
		r.Count = 1
	}
	if r.Sector >= d.Size() || r.Sector+r.Count > d.Size() || r.Sector+r.Count < r.Sector {
		return nil, opErr("", r.Name, d, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, d.Name(), d.Size()))
	}
	var out []MapPiece
	for pos, end := r.Sector, r.Sector+r.Count; pos < end; {
		steps, err := e.pool.Trace(d, pos)
		if err != nil {
			return nil, opErr("", r.Name, d, err)
		}
		n := end - pos
		for _, s := range steps {
			if s.Run > 0 {
				n = min(n, s.Run)
			}
			if s.Err != nil || s.Child == nil {
				n = min(n, s.Segment.End()-s.Sector)
			}
		}
		piece := MapPiece{Sector: pos, Count: n}
		for _, s := range steps {
			lv := MapLevel{Device: s.Device.Name(), Sector: s.Sector, Count: n, Target: s.Segment.Type, SegStart: s.Segment.Begin, SegLength: s.Segment.Len}
			if s.Child != nil {
				lv.Child, lv.ChildSector, lv.Leaf = rmapchain.DevName(s.Child), s.CSector, s.Child.IsLeaf()
			}
			if s.Err != nil {
				lv.Error = Strerror(errnoOf(s.Err))
			}
			piece.Levels = append(piece.Levels, lv)
		}
		out = append(out, piece)
		pos += n
	}
	return out, nil
}

// Rmap returns every device range backed by a range of a device (a leaf
// or a mapped device), the device itself first.
func (e *Engine) Rmap(_ context.Context, r RangeReq) ([]DeviceRanges, error) {
	return report(e, func() ([]DeviceRanges, error) { return e.rmapRange(r) })
}

func (e *Engine) rmapRange(r RangeReq) ([]DeviceRanges, error) {
	_, dev, err := e.target(r.Name)
	if err != nil {
		return nil, opErr("", r.Name, nil, err)
	}
	if r.Count == 0 {
		r.Count = 1
	}
	if r.Sector+r.Count > dev.Size() || r.Sector+r.Count < r.Sector {
		return nil, opErr("", r.Name, nil, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, r.Name, dev.Size()))
	}
	g := e.pool.Graph()
	src := extent.Of(extent.Extent{Start: r.Sector, Len: r.Count})
	sets := rmapchain.Propagate(g, map[*stack.Dev]extent.Set{dev: src}, nil)
	devs := make([]*stack.Dev, 0, len(sets))
	for d := range sets {
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b *stack.Dev) int {
		if h := g.Height(a) - g.Height(b); h != 0 {
			return h
		}
		if rmapchain.DevName(a) < rmapchain.DevName(b) {
			return -1
		}
		return 1
	})
	var out []DeviceRanges
	for _, d := range devs {
		s := sets[d].Clip(0, d.Size())
		if !s.Empty() {
			out = append(out, DeviceRanges{Device: rmapchain.DevName(d), Ranges: s})
		}
	}
	return out, nil
}

// Badblocks returns a device's bad ranges: for a leaf its own, for a
// mapped device the translated ones.
func (e *Engine) Badblocks(_ context.Context, r NameReq) (DeviceRanges, error) {
	return report(e, func() (DeviceRanges, error) {
		_, dev, err := e.target(r.Name)
		if err != nil {
			return DeviceRanges{}, opErr("", r.Name, nil, err)
		}
		e.recheckSizes(dev)
		return DeviceRanges{Device: rmapchain.DevName(dev), Ranges: e.badSet(dev).Clip(0, dev.Size())}, nil
	})
}

// Canonical returns the names events give the named devices (a mapped
// device's name for /dev/mapper/NAME or 0:N, a leaf's reference for its
// path). A name daxstack does not know is returned as given: one may watch
// a device before it exists.
func (e *Engine) Canonical(_ context.Context, r NamesReq) ([]string, error) {
	return report(e, func() ([]string, error) { return e.canonicalNames(r.Names), nil })
}

func (e *Engine) canonicalNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if _, dev, err := e.target(n); err == nil {
			out[i] = rmapchain.DevName(dev)
		}
	}
	return out
}

// Events reads the event log after a sequence number.
func (e *Engine) Events(_ context.Context, r EventsReq) (EventsResp, error) {
	return report(e, func() (EventsResp, error) { return e.events(r) })
}

func (e *Engine) events(r EventsReq) (EventsResp, error) {
	r.Devices = e.canonicalNames(r.Devices)
	resp := EventsResp{Events: []rmapchain.Event{}}
	err := e.db.View(func(tx *store.Tx) error {
		var err error
		if resp.Last, err = tx.LastSeq(); err != nil {
			return err
		}
		return tx.Events(r.Since, func(ev rmapchain.Event) error {
			if len(r.Devices) == 0 || slices.Contains(r.Devices, ev.Device) {
				resp.Events = append(resp.Events, ev)
			}
			if r.Limit > 0 && len(resp.Events) >= r.Limit {
				return errStop
			}
			return nil
		})
	})
	if err == errStop {
		err = nil
	}
	return resp, err
}

var errStop = fmt.Errorf("stop")
