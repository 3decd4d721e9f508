package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

func init() {
	register("create", true, (*Engine).create)
	register("create-concise", true, (*Engine).createConcise)
	register("load", true, (*Engine).loadTable)
	register("resume", true, (*Engine).resume)
	register("suspend", true, (*Engine).suspend)
	register("clear", true, (*Engine).clear)
	register("wipe_table", true, (*Engine).wipeTable)
	register("remove", true, (*Engine).remove)
	register("remove_all", true, (*Engine).removeAll)
	register("rename", true, (*Engine).rename)
	register("message", true, (*Engine).message)
	register("inject", true, (*Engine).inject)
	register("clear-errors", true, (*Engine).clearErrors)
	register("error-range", true, (*Engine).errorRange)
	register("good-range", true, (*Engine).goodRange)
	register("claim", true, (*Engine).claim)
	register("release", true, (*Engine).release)
	registerIO("read", false, (*Engine).read)
	registerIO("write", true, (*Engine).write)
}

// device finds a mapped device, as dmsetup does: by name, /dev/mapper/NAME
// or 0:minor.
func (e *Engine) device(name string) (*stack.Device, error) {
	d, err := e.pool.Device(name)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// badSet returns every sector of d (unclipped: sectors past its end
// included) whose read fails, in the current graph.
func (e *Engine) badSet(d *stack.Dev) extent.Set {
	g := e.pool.Graph()
	in := map[*stack.Dev]bool{}
	for _, x := range g.Descendants(d) {
		in[x] = true
	}
	within := func(x *stack.Dev) bool { return in[x] }
	return rmapchain.Propagate(g, rmapchain.Sources(g, within), within)[d]
}

// tableChanged records the events of a table swap on d: its bad sectors
// before were `before` with size oldSize; those that became bad or good are
// translated up from d. d's own event is limited to sectors it had both
// before and after (a new or resized device reports no change of its tail).
func (e *Engine) tableChanged(d *stack.Device, before extent.Set, oldSize uint64) {
	after := e.badSet(d.Dev())
	g := e.pool.Graph()
	now := e.cfg.Now()
	keep := min(oldSize, d.Size())
	for _, k := range []struct {
		kind rmapchain.Kind
		s    extent.Set
	}{{rmapchain.MediaError, after.Subtract(before)}, {rmapchain.Cleared, before.Subtract(after)}} {
		for _, ev := range rmapchain.Translate(g, k.kind, d.Dev(), k.s, now) {
			if ev.Device == d.Name() {
				if ev.Ranges = ev.Ranges.Clip(0, keep); ev.Ranges.Empty() {
					continue
				}
			}
			e.op.events = append(e.op.events, ev)
		}
	}
}

// swap makes d's inactive table live and records the events.
func (e *Engine) swap(d *stack.Device) error {
	if d.Size() == 0 && len(e.pool.Users(d.Dev())) == 0 {
		// A device without a table and without users: no sector of it
		// existed before and nothing above it can see a change, so there
		// are no events to compute (this keeps bulk creation linear).
		if err := e.pool.Resume(d); err != nil {
			return err
		}
		e.touchDevice(d)
		return nil
	}
	before, oldSize := e.badSet(d.Dev()), d.Size()
	if err := e.pool.Resume(d); err != nil {
		return err
	}
	e.touchDevice(d)
	// Parents print d by name and keep their text; only d's record changes.
	e.tableChanged(d, before, oldSize)
	return nil
}

func (e *Engine) create(_ context.Context, r CreateReq) (Empty, error) {
	return Empty{}, e.mutate(func() error { return e.createOne(r) })
}

func (e *Engine) createOne(r CreateReq) error {
	d, err := e.pool.Create(r.Name, r.UUID)
	if err != nil {
		return opErr("create", r.Name, nil, err)
	}
	e.touchDevice(d)
	if r.Table == nil {
		return nil
	}
	lines, err := stack.ParseText(*r.Table, r.Source)
	if err != nil {
		return opErr("", r.Name, d, err)
	}
	if len(lines) == 0 {
		return nil // empty stdin: a device with no table, as dmsetup
	}
	if err := e.pool.Load(d, lines); err != nil {
		return opErr("reload", r.Name, d, err)
	}
	return opErr("resume", r.Name, d, e.swap(d))
}

func (e *Engine) createConcise(_ context.Context, r ConciseReq) (Empty, error) {
	devs, err := stack.ParseConcise(r.Spec)
	if err != nil {
		return Empty{}, opErr("", "", nil, err)
	}
	return Empty{}, e.mutate(func() error {
		for _, c := range devs {
			text := strings.Join(c.Lines, "\n")
			if err := e.createOne(CreateReq{Name: c.Name, UUID: c.UUID, Table: &text, ReadOnly: c.ReadOnly}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *Engine) loadTable(_ context.Context, r LoadReq) (Empty, error) {
	return Empty{}, e.mutate(func() error {
		d, err := e.device(r.Name)
		if err != nil {
			return opErr("reload", r.Name, nil, err)
		}
		lines, err := stack.ParseText(r.Table, r.Source)
		if err != nil {
			return opErr("", r.Name, d, err)
		}
		if err := e.pool.Load(d, lines); err != nil {
			return opErr("reload", r.Name, d, err)
		}
		e.touchDevice(d)
		e.forgetErrorRanges(d)
		return nil
	})
}

// forgetErrorRanges drops error-range bookkeeping when a table is loaded
// by hand: the new table is the new pristine one.
func (e *Engine) forgetErrorRanges(d *stack.Device) {
	if r, ok := e.devs[d.Name()]; ok && (r.Pristine != nil || !r.ErrorRanges.Empty()) {
		r.Pristine, r.ErrorRanges = nil, extent.Set{}
		e.devs[d.Name()] = r
	}
}

func (e *Engine) resume(_ context.Context, r NameReq) (Empty, error) {
	return Empty{}, e.mutate(func() error {
		d, err := e.device(r.Name)
		if err != nil {
			return opErr("resume", r.Name, nil, err)
		}
		if d.Inactive() == nil && !d.Suspended() {
			return nil // resuming a running device is a no-op, as in dm
		}
		return opErr("resume", r.Name, d, e.swap(d))
	})
}

func (e *Engine) suspend(_ context.Context, r NameReq) (Empty, error) {
	return Empty{}, e.onDevice("suspend", r.Name, e.pool.Suspend)
}

func (e *Engine) clear(_ context.Context, r NameReq) (Empty, error) {
	return Empty{}, e.onDevice("clear", r.Name, e.pool.Clear)
}

// onDevice runs the pool operation fn on the device named name, in one
// transaction that records the device afterwards.
func (e *Engine) onDevice(op, name string, fn func(*stack.Device) error) error {
	return e.mutate(func() error {
		d, err := e.device(name)
		if err != nil {
			return opErr(op, name, nil, err)
		}
		if err := fn(d); err != nil {
			return opErr(op, name, d, err)
		}
		e.touchDevice(d)
		return nil
	})
}

func (e *Engine) wipeTable(_ context.Context, r NameReq) (Empty, error) {
	return Empty{}, e.mutate(func() error { return e.wipe(r.Name) })
}

// wipe loads one error segment over the whole device and resumes it.
func (e *Engine) wipe(name string) error {
	d, err := e.device(name)
	if err != nil {
		return opErr("reload", name, nil, err)
	}
	size := d.Size()
	if size == 0 {
		return nil
	}
	if err := e.pool.Load(d, []stack.Line{{No: 1, Start: 0, Len: size, Type: "error"}}); err != nil {
		return opErr("reload", name, d, err)
	}
	e.forgetErrorRanges(d)
	return opErr("resume", name, d, e.swap(d))
}

func (e *Engine) remove(_ context.Context, r RemoveReq) (Empty, error) {
	if r.Force {
		// dmsetup remove -f replaces the table first; the wipe stands even
		// if the removal then fails.
		if err := e.mutate(func() error { return e.wipe(r.Name) }); err != nil {
			return Empty{}, err
		}
	}
	return Empty{}, e.mutate(func() error { return e.removeOne(r.Name) })
}

func (e *Engine) removeOne(name string) error {
	d, err := e.device(name)
	if err != nil {
		return opErr("remove", name, nil, err)
	}
	if len(e.pool.Users(d.Dev())) == 0 {
		// A table error-range keeps to restore uses d as much as a live
		// one: removing d would make good-range fail, or splice back
		// whatever device takes the name next.
		for u, t := range e.pristineTables() {
			if u != d.Name() && slices.Contains(t.Devs(), d.Dev()) {
				return opErr("remove", name, d, fmt.Errorf("%w: %s is used by %s (in the table error-range keeps to restore)", stack.ErrBusy, d.Name(), u))
			}
		}
	}
	if err := e.pool.Remove(d); err != nil {
		return opErr("remove", name, d, err)
	}
	e.op.deleted[d.Name()] = true
	e.op.devices[d.Name()] = true
	e.op.touched = true
	return nil
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

func (e *Engine) removeAll(_ context.Context, r RemoveReq) (Empty, error) {
	var failed []error
	err := e.mutate(func() error {
		// Remove top devices first; repeat while progress is made, so a
		// device is removed once whatever used it is gone.
		for {
			progress := false
			failed = failed[:0]
			g := e.pool.Graph()
			devs := e.pool.Devices()
			slices.SortStableFunc(devs, func(a, b *stack.Device) int { return g.Height(b.Dev()) - g.Height(a.Dev()) })
			for _, d := range devs {
				if r.Force && len(e.pool.Users(d.Dev())) == 0 {
					if err := e.wipe(d.Name()); err != nil {
						failed = append(failed, err)
						continue
					}
				}
				if err := e.removeOne(d.Name()); err != nil {
					failed = append(failed, err)
				} else {
					progress = true
				}
			}
			if !progress || len(failed) == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return Empty{}, err
	}
	if len(failed) > 0 {
		return Empty{}, &RemoveAllError{Count: len(failed), Errs: failed}
	}
	return Empty{}, nil
}

func (e *Engine) rename(_ context.Context, r RenameReq) (Empty, error) {
	return Empty{}, e.mutate(func() error {
		d, err := e.device(r.Name)
		if err != nil {
			return opErr("rename", r.Name, nil, err)
		}
		if r.SetUUID {
			if err := e.pool.SetUUID(d, r.New); err != nil {
				return opErr("rename", r.Name, d, err)
			}
			e.touchDevice(d)
			return nil
		}
		old := d.Name()
		pristine := e.pristineTables()
		if err := e.pool.Rename(d, r.New); err != nil {
			return opErr("rename", r.Name, d, err)
		}
		e.op.deleted[old] = true
		if rec, ok := e.devs[old]; ok {
			rec.Name = r.New
			e.devs[r.New] = rec
		}
		e.touchDevice(d)
		// Parents print d by name: their stored tables change too.
		for _, u := range e.pool.Users(d.Dev()) {
			e.touchDevice(u)
		}
		// So do the tables error-range keeps to restore: built before the
		// rename, they print the new name now.
		for name, t := range pristine {
			if name == old {
				name = r.New
			}
			rec := e.devs[name]
			if text := t.StoredText(); rec.Pristine != nil && text != *rec.Pristine {
				rec.Pristine = &text
				e.devs[name] = rec
				if u, err := e.pool.Device(name); err == nil {
					e.touchDevice(u)
				}
			}
		}
		if h, ok := e.holders[old]; ok {
			e.op.holders[old] = nil
			h.Device = r.New
			e.op.holders[r.New] = &h
		}
		return nil
	})
}

func (e *Engine) message(_ context.Context, r MessageReq) (MessageResp, error) {
	var reply string
	err := e.mutate(func() error {
		d, err := e.device(r.Name)
		if err != nil {
			return opErr("message", r.Name, nil, err)
		}
		if len(r.Args) == 0 {
			return opErr("message", r.Name, d, fmt.Errorf("%w: Empty message received.", stack.ErrInvalid))
		}
		t := d.Active()
		i, ok := t.Find(r.Sector)
		if !ok {
			return opErr("message", r.Name, d, fmt.Errorf("%w: Target message sector outside device.", stack.ErrInvalid))
		}
		m, ok := t.Segments()[i].Target.(stack.Messager)
		if !ok {
			return opErr("message", r.Name, d, fmt.Errorf("%w: Target type does not support messages", stack.ErrInvalid))
		}
		reply, err = m.Message(r.Args)
		return opErr("message", r.Name, d, err)
	})
	return MessageResp{Reply: reply}, err
}

// target resolves a name to a mapped device or a leaf. A leaf no table
// uses is opened for the occasion.
func (e *Engine) target(name string) (*stack.Device, *stack.Dev, error) {
	if d, err := e.pool.Device(name); err == nil {
		return d, d.Dev(), nil
	}
	if dev, err := e.pool.Lookup(name); err == nil {
		return nil, dev, nil
	}
	return nil, nil, fmt.Errorf("%w: %s is neither a mapped device nor a leaf daxstack knows", stack.ErrNotFound, name)
}

// leafPieces maps a range of a device (mapped or leaf) down to leaf pieces.
func (e *Engine) leafPieces(r RangeReq, whole bool) ([]stack.Piece, string, error) {
	d, dev, err := e.target(r.Name)
	if err != nil {
		// A leaf no table uses: address it directly.
		l, oerr := e.opener.Open(r.Name)
		if oerr != nil {
			return nil, "", err
		}
		if old, ok := e.leaves[l.ID()]; ok {
			l.Close()
			l = old
		} else {
			if p, ok := e.poison[l.ID()]; ok && l.PoisonSource() == "emulated" {
				l.SetPoison(p)
			}
			e.leaves[l.ID()] = l
			e.op.leaves[l.ID()] = true
		}
		return e.leafRange(l.ID(), l.Size(), r, whole)
	}
	if d == nil {
		return e.leafRange(dev.Leaf().ID(), dev.Size(), r, whole)
	}
	if whole {
		r.Sector, r.Count = 0, d.Size()
	}
	pieces, err := e.pool.MapRange(d, r.Sector, r.Count)
	return pieces, "", err
}

func (e *Engine) leafRange(id string, size uint64, r RangeReq, whole bool) ([]stack.Piece, string, error) {
	if whole {
		r.Sector, r.Count = 0, size
	}
	if r.Count == 0 || r.Sector+r.Count > size || r.Sector+r.Count < r.Sector {
		return nil, "", fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, r.Name, size)
	}
	return []stack.Piece{{Start: r.Sector, Len: r.Count, Sector: r.Sector}}, id, nil
}

// poisonOp injects or clears poison on the leaves under a range.
func (e *Engine) poisonOp(r RangeReq, clear bool) (InjectResp, error) {
	var resp InjectResp
	op := "inject"
	if clear {
		op = "clear-errors"
	}
	err := e.mutate(func() error {
		pieces, leafID, err := e.leafPieces(r, clear && r.All)
		if err != nil {
			return opErr("", r.Name, nil, err)
		}
		for _, p := range pieces {
			id := leafID
			if id == "" && p.Leaf != nil {
				id = p.Leaf.Leaf().ID()
			}
			if id == "" {
				why := "no backing store (zero target)"
				if p.Killed {
					why = "error segment: reads there fail already"
				}
				resp.Skipped = append(resp.Skipped, SkippedPart{Sector: p.Start, Count: p.Len, Why: why})
				continue
			}
			l := e.leaves[id]
			set := extent.Of(extent.Extent{Start: p.Sector, Len: p.Len})
			if clear {
				set = set.Intersect(l.BadBlocks())
				if set.Empty() {
					continue
				}
				err = l.Clear(set)
			} else {
				err = l.Inject(set)
			}
			if err != nil {
				return opErr("", l.Ref(), nil, fmt.Errorf("%s %s: %w", op, l.Ref(), err))
			}
			for x := range set.Extents() {
				resp.Leaves = append(resp.Leaves, LeafRange{Leaf: l.Ref(), Sector: x.Start, Count: x.Len})
			}
		}
		return nil
	})
	return resp, err
}

func (e *Engine) inject(_ context.Context, r RangeReq) (InjectResp, error) {
	return e.poisonOp(r, false)
}

func (e *Engine) clearErrors(_ context.Context, r RangeReq) (InjectResp, error) {
	return e.poisonOp(r, true)
}

// errorRange and goodRange splice error segments into a device's table
// the way fstests' _dmerror_mark_range_bad/good do, keeping the table
// before the first splice so that marking everything good again restores
// its text exactly.
func (e *Engine) errorRange(_ context.Context, r RangeReq) (Empty, error) {
	return Empty{}, e.mutate(func() error { return e.spliceRange(r, true) })
}

func (e *Engine) goodRange(_ context.Context, r RangeReq) (Empty, error) {
	return Empty{}, e.mutate(func() error { return e.spliceRange(r, false) })
}

func (e *Engine) spliceRange(r RangeReq, bad bool) error {
	d, err := e.device(r.Name)
	if err != nil {
		return opErr("reload", r.Name, nil, err)
	}
	rec := e.devs[d.Name()]
	pristineText := tableText(d.Active())
	if rec.Pristine != nil {
		pristineText = rec.Pristine
	}
	if pristineText == nil {
		return opErr("reload", r.Name, d, fmt.Errorf("%w: %s has no live table", stack.ErrInvalid, d.Name()))
	}
	if r.Count == 0 || r.Sector+r.Count > d.Size() || r.Sector+r.Count < r.Sector {
		return opErr("", r.Name, d, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, d.Name(), d.Size()))
	}
	rng := extent.Of(extent.Extent{Start: r.Sector, Len: r.Count})
	ranges := rec.ErrorRanges
	if bad {
		ranges = ranges.Union(rng)
	} else {
		ranges = ranges.Subtract(rng)
	}
	var lines []stack.Line
	if ranges.Empty() {
		if lines, err = stack.ParseText(*pristineText, ""); err != nil {
			return opErr("reload", r.Name, d, err)
		}
	} else {
		// Build the pristine table in a scratch device to splice it.
		lines, err = e.splice(d, *pristineText, ranges)
		if err != nil {
			return opErr("reload", r.Name, d, err)
		}
	}
	if err := e.pool.Load(d, lines); err != nil {
		return opErr("reload", r.Name, d, err)
	}
	if err := e.swap(d); err != nil {
		return opErr("resume", r.Name, d, err)
	}
	if ranges.Empty() {
		rec.Pristine, rec.ErrorRanges = nil, extent.Set{}
	} else {
		rec.Pristine, rec.ErrorRanges = pristineText, ranges
	}
	rec.Name = d.Name()
	e.devs[d.Name()] = rec
	return nil
}

// pristineTables builds the tables error-range keeps to restore (the
// devices' tables before their first splice), by device name. A kept
// table that no longer builds is left out.
func (e *Engine) pristineTables() map[string]*stack.Table {
	out := map[string]*stack.Table{}
	for name, rec := range e.devs {
		if rec.Pristine == nil {
			continue
		}
		d, err := e.pool.Device(name)
		if err != nil {
			continue
		}
		lines, err := stack.ParseText(*rec.Pristine, "")
		if err != nil {
			continue
		}
		if t, err := e.pool.Build(d, lines); err == nil {
			out[name] = t
		}
	}
	return out
}

// splice returns the lines of the pristine table of d with ranges made to
// fail. The pristine table is built (validated, as a load would) without
// being put in either of d's slots.
func (e *Engine) splice(d *stack.Device, pristine string, ranges extent.Set) ([]stack.Line, error) {
	lines, err := stack.ParseText(pristine, "")
	if err != nil {
		return nil, err
	}
	t, err := e.pool.Build(d, lines)
	if err != nil {
		return nil, err
	}
	return t.Splice(ranges)
}

// ClaimResp names the claimed device as events name it.
type ClaimResp struct {
	Device string `json:"device"`
}

func (e *Engine) claim(_ context.Context, r ClaimReq) (ClaimResp, error) {
	var resp ClaimResp
	return resp, e.mutate(func() error {
		if h, ok := e.holders[r.Device]; ok && h.Holder != r.Holder && !holderAlive(h) {
			// A claim whose process is gone is void, as a kernel claim
			// ends when its holder closes the device.
			if dev, err := e.pool.Lookup(r.Device); err == nil {
				e.pool.Release(dev, "")
			}
			e.op.holders[r.Device] = nil
		}
		dev, err := e.pool.ClaimLeaf(r.Device, r.Holder)
		if err != nil {
			return opErr("", r.Device, nil, fmt.Errorf("claim %s: %w", r.Device, err))
		}
		ref := rmapchain.DevName(dev)
		resp.Device = ref
		// Since is compared with the holder process's start time, so it
		// is the real clock's, not the engine's (which tests replace).
		e.op.holders[ref] = &store.HolderRecord{Device: ref, Holder: r.Holder, PID: r.PID, Since: time.Now()}
		if l := e.daxLeaf(dev); l != nil {
			e.noteLeafForce(l)
		}
		e.op.touched = true
		return nil
	})
}

// noteLeafForce makes the running command write l's record.
func (e *Engine) noteLeafForce(l interface{ ID() string }) { e.op.leaves[l.ID()] = true }

func (e *Engine) release(_ context.Context, r ClaimReq) (Empty, error) {
	return Empty{}, e.mutate(func() error {
		dev, err := e.pool.Lookup(r.Device)
		if err != nil {
			return opErr("", r.Device, nil, err)
		}
		ref := rmapchain.DevName(dev)
		if err := e.pool.Release(dev, r.Holder); err != nil {
			return opErr("", r.Device, nil, fmt.Errorf("release %s: %w", r.Device, err))
		}
		e.op.holders[ref] = nil
		e.op.touched = true
		return nil
	})
}

// registerIO registers an I/O method: it runs without the engine lock
// held during the I/O, so a read waiting for a suspended device does not
// stop the resume that will release it.
func registerIO(name string, mutates bool, fn func(e *Engine, ctx context.Context, req IOReq) (IOResp, error)) {
	methods[name] = Method{Name: name, Mutates: mutates, call: func(ctx context.Context, e *Engine, params json.RawMessage) (any, error) {
		var req IOReq
		if err := json.Unmarshal(params, &req); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUsage, name, err)
		}
		return fn(e, ctx, req)
	}, unlocked: true}
}

// ioTarget is what reads and writes go to: a mapped device, or a leaf.
type ioTarget interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Size() uint64 // sectors
}

// ioDevice finds a device for I/O: a mapped device, or a leaf a table (or
// a holder) uses. Outside the daemon nothing can resume a suspended device
// while this process waits, so I/O to one is refused instead of hanging.
func (e *Engine) ioDevice(name string) (ioTarget, []*stack.Dev, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, dev, err := e.target(name)
	if err != nil {
		return nil, nil, err
	}
	below := e.pool.Graph().Descendants(dev)
	if d == nil {
		return leafRef{e.daxLeaf(dev)}, below, nil
	}
	if !e.cfg.Daemon {
		for _, x := range below {
			if md := x.Mapped(); md != nil && md.Suspended() {
				return nil, nil, fmt.Errorf("%w: %s is suspended; I/O would wait for `daxstack resume %s`", syscall.EAGAIN, md.Name(), md.Name())
			}
		}
	}
	return d, below, nil
}

func (e *Engine) read(_ context.Context, r IOReq) (IOResp, error) {
	d, _, err := e.ioDevice(r.Name)
	if err != nil {
		return IOResp{}, opErr("", r.Name, nil, err)
	}
	if r.Length < 0 || r.Length > MaxIO {
		return IOResp{}, fmt.Errorf("%w: read length %d is not within 0..%d bytes", ErrUsage, r.Length, MaxIO)
	}
	length := r.Length
	if end := int64(d.Size()) * stack.SectorSize; r.Offset >= 0 && end-r.Offset < int64(length) {
		length = int(max(end-r.Offset, 0)) // no buffer past the end of the device
	}
	buf := make([]byte, length)
	n, err := d.ReadAt(buf, r.Offset)
	if errors.Is(err, io.EOF) {
		err = nil // past the end: a short read, as dd on a block device
	}
	return IOResp{N: n, Data: buf[:n]}, err
}

func (e *Engine) write(_ context.Context, r IOReq) (IOResp, error) {
	if e.cfg.ReadOnly {
		return IOResp{}, ErrReadOnly
	}
	if len(r.Data) > MaxIO {
		return IOResp{}, fmt.Errorf("%w: write of %d bytes is over %d", ErrUsage, len(r.Data), MaxIO)
	}
	d, below, err := e.ioDevice(r.Name)
	if err != nil {
		return IOResp{}, opErr("", r.Name, nil, err)
	}
	n, ioErr := d.WriteAt(r.Data, r.Offset)
	for _, x := range below {
		if l := e.daxLeaf(x); l != nil {
			if serr := l.Sync(); serr != nil && ioErr == nil {
				ioErr = serr
			}
		}
	}
	// Poison the write cleared is recorded, with its events, whether or
	// not the write as a whole succeeded.
	return IOResp{N: n}, errors.Join(ioErr, e.flushPoison())
}

// flushPoison commits the poison changes leaves reported during I/O.
func (e *Engine) flushPoison() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mutate(func() error { return nil })
}
