package control

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// Inject poisons the sectors of a range of a device or leaf: the range is
// mapped down and the leaf sectors under it are poisoned.
func (e *Engine) Inject(ctx context.Context, r RangeReq) (InjectResp, error) {
	var resp InjectResp
	err := e.command(ctx, func() error {
		var err error
		resp, err = e.poisonOp(ctx, r, false)
		return err
	})
	return resp, err
}

// ClearErrors clears the poison under a range (all of the device with
// RangeReq.All).
func (e *Engine) ClearErrors(ctx context.Context, r RangeReq) (InjectResp, error) {
	var resp InjectResp
	err := e.command(ctx, func() error {
		var err error
		resp, err = e.poisonOp(ctx, r, true)
		return err
	})
	return resp, err
}

// target resolves a name to a mapped device or a leaf the pool holds.
func (e *Engine) target(name string) (*stack.Device, *stack.Dev, error) {
	if d, err := e.pool.Device(name); err == nil {
		return d, d.Dev(), nil
	}
	dev, err := e.pool.Lookup(name)
	if err == nil {
		return nil, dev, nil
	}
	if errors.Is(err, syscall.EACCES) {
		return nil, nil, err // a peer may not open it (peer.go)
	}
	return nil, nil, fmt.Errorf("%w: %s is neither a mapped device nor a leaf daxstack knows", stack.ErrNotFound, name)
}

// leafPieces maps a range of a device (mapped or leaf) down to leaf
// pieces. A leaf no table uses is opened for the command (release).
func (e *Engine) leafPieces(r RangeReq, whole bool) (pieces []stack.Piece, release func(), err error) {
	release = func() {}
	d, dev, err := e.target(r.Name)
	if err != nil {
		// A leaf no table uses: address it directly.
		l, aerr := e.pool.AcquireLeaf(r.Name)
		if aerr != nil {
			return nil, release, err
		}
		release = func() { e.pool.ReleaseLeaf(l) }
		dev = l
	}
	if d == nil {
		if err := e.peerUse(dev, true); err != nil {
			return nil, release, err
		}
		pieces, err := leafRange(dev, r, whole)
		return pieces, release, err
	}
	if whole {
		r.Sector, r.Count = 0, d.Size()
	}
	pieces, err = e.pool.MapRange(d, r.Sector, r.Count)
	return pieces, release, err
}

func leafRange(dev *stack.Dev, r RangeReq, whole bool) ([]stack.Piece, error) {
	size := dev.Size()
	if whole {
		r.Sector, r.Count = 0, size
	}
	if r.Count == 0 || r.Sector+r.Count > size || r.Sector+r.Count < r.Sector {
		return nil, fmt.Errorf("%w: sectors %d+%d are outside %s (%d sectors)", stack.ErrInvalid, r.Sector, r.Count, r.Name, size)
	}
	return []stack.Piece{{Start: r.Sector, Len: r.Count, Leaf: dev, Sector: r.Sector}}, nil
}

// poisonOp injects or clears poison on the leaves under a range.
func (e *Engine) poisonOp(ctx context.Context, r RangeReq, clear bool) (InjectResp, error) {
	var resp InjectResp
	op := "inject"
	if clear {
		op = "clear-errors"
	}
	err := e.runFor(ctx, func() error {
		resp = InjectResp{}
		pieces, release, err := e.leafPieces(r, clear && r.All)
		defer release()
		if err != nil {
			return opErr("", r.Name, nil, err)
		}
		for _, p := range pieces {
			l := e.daxLeaf(p.Leaf)
			if l == nil {
				why := "no backing store (zero target)"
				switch {
				case p.PastEnd:
					why = "beyond the end of a device below: reads there fail already"
				case p.Killed:
					why = "error segment: reads there fail already"
				}
				resp.Skipped = append(resp.Skipped, SkippedPart{Sector: p.Start, Count: p.Len, Why: why})
				continue
			}
			set := extent.Of(extent.Extent{Start: p.Sector, Len: p.Len})
			old := l.BadBlocks()
			if clear {
				set = set.Intersect(old)
				if set.Empty() {
					continue
				}
				err = l.Clear(set)
			} else {
				err = l.Inject(set)
			}
			// An emulated list goes back as it was if the command fails;
			// the kernel's list (pmem) is the truth and a rescan reads it.
			if l.PoisonSource() == "emulated" {
				e.onUndo(func() { l.SetPoison(old) })
			}
			if err != nil {
				return opErr("", l.Ref(), nil, fmt.Errorf("%s %s: %w", op, l.Ref(), err))
			}
			for x := range set.Extents() {
				resp.Leaves = append(resp.Leaves, LeafRange{Leaf: rmapchain.LeafName(l), Sector: x.Start, Count: x.Len})
			}
		}
		return nil
	})
	return resp, err
}
