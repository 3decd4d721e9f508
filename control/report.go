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

func init() {
	register("list", false, (*Engine).list)
	register("info", false, (*Engine).info)
	register("table", false, (*Engine).table)
	register("status", false, (*Engine).status)
	registerStateless("targets", targetTypes)
	registerStateless("version", func() VersionResp { return VersionResp{Library: Version, Driver: Version} })
	register("map", false, (*Engine).mapRange)
	register("rmap", false, (*Engine).rmapRange)
	register("badblocks", false, (*Engine).badblocks)
	register("events", false, (*Engine).events)
	register("canonical", false, (*Engine).canonical)
}

func (e *Engine) list(_ context.Context, _ Empty) ([]DeviceInfo, error) {
	var out []DeviceInfo
	for _, d := range e.pool.Devices() {
		out = append(out, e.deviceInfo(d))
	}
	return out, nil
}

func (e *Engine) info(_ context.Context, r NameReq) (DeviceInfo, error) {
	d, err := e.device(r.Name)
	if err != nil {
		return DeviceInfo{}, opErr("info", r.Name, nil, err)
	}
	return e.deviceInfo(d), nil
}

func (e *Engine) deviceInfo(d *stack.Device) DeviceInfo {
	in := DeviceInfo{
		Name: d.Name(), UUID: d.UUID(), Major: stack.MappedMajor, Minor: d.Minor(),
		Suspended: d.Suspended(), Live: d.Active() != nil, Inactive: d.Inactive() != nil,
		Events: d.EventNr(), Size: d.Size(), Holder: e.pool.Holder(d.Dev()),
		ReadOnly: e.devs[d.Name()].ReadOnly,
	}
	in.Open = len(e.pool.Users(d.Dev()))
	if in.Holder != "" {
		in.Open++
	}
	if t := d.Active(); t != nil {
		in.Targets = len(t.Segments())
		for _, s := range t.Segments() {
			if !slices.Contains(in.Types, s.Type) {
				in.Types = append(in.Types, s.Type)
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
		}
	}
	in.Bad = e.badSet(d.Dev()).Clip(0, d.Size()).Sectors()
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
		if id := l.Identity(); id.Kind == dax.KindPmem || id.Kind == dax.KindBlock {
			r.Major, r.Minor, r.HasNum = id.Major, id.Minor, true
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
	resp := TableResp{Name: d.Name(), UUID: d.UUID(), Minor: d.Minor(), ReadOnly: e.devs[d.Name()].ReadOnly, Segments: []SegmentInfo{}}
	for _, s := range t.Segments() {
		p := s.Target.Table()
		if status {
			p = s.Target.Status()
		}
		resp.Segments = append(resp.Segments, SegmentInfo{Start: s.Begin, Length: s.Len, Target: s.Type, Params: p})
	}
	return resp, nil
}

func (e *Engine) table(_ context.Context, r TableReq) (TableResp, error) { return e.tableOf(r, false) }

func (e *Engine) status(_ context.Context, r TableReq) (TableResp, error) { return e.tableOf(r, true) }

func targetTypes() []TargetTypeInfo {
	var out []TargetTypeInfo
	for _, t := range stack.Types() {
		out = append(out, TargetTypeInfo{Name: t.Name, Version: t.Version})
	}
	return out
}

// mapRange returns the path of a range down its stack: one MapPiece per
// part that stays contiguous all the way down, with every level.
func (e *Engine) mapRange(_ context.Context, r RangeReq) ([]MapPiece, error) {
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

// rmapRange returns every device range backed by a range of a device (a
// leaf or a mapped device), the device itself first.
func (e *Engine) rmapRange(_ context.Context, r RangeReq) ([]DeviceRanges, error) {
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

// badblocks returns a device's bad ranges: for a leaf its own, for a
// mapped device the translated ones.
func (e *Engine) badblocks(_ context.Context, r NameReq) (DeviceRanges, error) {
	_, dev, err := e.target(r.Name)
	if err != nil {
		return DeviceRanges{}, opErr("", r.Name, nil, err)
	}
	return DeviceRanges{Device: rmapchain.DevName(dev), Ranges: e.badSet(dev).Clip(0, dev.Size())}, nil
}

// NamesReq lists device names.
type NamesReq struct {
	Names []string `json:"names"`
}

// canonical returns the names events give the named devices (a mapped
// device's name for /dev/mapper/NAME or 0:N, a leaf's reference for its
// path). A name daxstack does not know is returned as given: one may watch
// a device before it exists.
func (e *Engine) canonical(_ context.Context, r NamesReq) ([]string, error) {
	return e.canonicalNames(r.Names), nil
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

func (e *Engine) events(_ context.Context, r EventsReq) (EventsResp, error) {
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
