package serve

import (
	"context"
	"errors"
	"sort"
	"syscall"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/stack"
)

// BadBlocksContext is the meta context of a device's bad ranges: flag
// BadBlock on exactly the sectors `daxstack badblocks` prints.
const (
	BadBlocksContext = "daxstack:badblocks"
	BadBlock         = 1
)

// features are what a device export supports: the engine keeps no cache
// of its own, so a flush on one connection holds for all (multi-conn).
const features = nbd.CanFlush | nbd.CanFUA | nbd.CanTrim | nbd.CanWriteZeroes | nbd.CanMultiConn

// nbdDir is the nbd.Exports of the devices.
type nbdDir struct{ x *Exports }

// Open implements nbd.Exports: the export named by the device.
func (n nbdDir) Open(_ context.Context, p *nbd.Peer, name string) (*nbd.Export, error) {
	if !n.x.mayUse(p) {
		return nil, nbd.ErrDenied
	}
	d := n.x.lookup(name)
	if d == nil {
		return nil, nbd.ErrUnknownExport
	}
	d.mu.Lock()
	select {
	case <-d.gone:
		d.mu.Unlock()
		return nil, nbd.ErrUnknownExport
	default:
	}
	d.conns++
	d.mu.Unlock()
	return &nbd.Export{
		Name:         name,
		Description:  "daxstack mapped device " + name,
		Size:         d.size.Load(),
		ReadOnly:     d.ro.Load(),
		Features:     features,
		BlockSizes:   nbd.BlockSizes{Minimum: 1, Preferred: 4096},
		MetaContexts: []string{BadBlocksContext},
		Backend:      &backend{x: n.x, d: d},
	}, nil
}

// List implements nbd.Exports.
func (n nbdDir) List(_ context.Context, p *nbd.Peer) ([]nbd.ExportInfo, error) {
	if !n.x.mayUse(p) {
		return nil, nbd.ErrDenied
	}
	var out []nbd.ExportInfo
	n.x.idx.RLock()
	for name := range n.x.devs {
		out = append(out, nbd.ExportInfo{Name: name, Description: "daxstack mapped device " + name})
	}
	n.x.idx.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// backend is one NBD connection's use of a device.
type backend struct {
	x      *Exports
	d      *device
	closed bool
}

// err gives a request's error in the protocol's terms: a device that is
// gone ends the connection's use of it.
func (b *backend) err(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-b.d.gone:
		return nbd.ErrExportGone
	default:
	}
	if errors.Is(err, stack.ErrRemoved) {
		return nbd.ErrExportGone
	}
	return err
}

func (b *backend) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := b.d.handle().ReadAtContext(ctx, p, off)
	return n, b.err(err)
}

func (b *backend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) (int, error) {
	h := b.d.handle()
	n, err := h.WriteAtContext(ctx, p, off)
	if err == nil && fua {
		err = h.Flush(ctx)
	}
	return n, b.err(err)
}

func (b *backend) WriteZeroes(ctx context.Context, off, length int64, flags nbd.ZeroFlags) error {
	if flags&nbd.ZeroFast != 0 {
		return syscall.EOPNOTSUPP // not advertised: writing zeros is all there is
	}
	h := b.d.handle()
	err := h.WriteZeroes(ctx, off, length)
	if err == nil && flags&nbd.ZeroFUA != 0 {
		err = h.Flush(ctx)
	}
	return b.err(err)
}

func (b *backend) Trim(ctx context.Context, off, length int64, fua bool) error {
	h := b.d.handle()
	err := h.Discard(ctx, off, length)
	if err == nil && fua {
		err = h.Flush(ctx)
	}
	return b.err(err)
}

func (b *backend) Flush(ctx context.Context) error { return b.err(b.d.handle().Flush(ctx)) }

// BlockStatus implements the two meta contexts: base:allocation (the zero
// target's segments are holes) and daxstack:badblocks (the engine's bad
// ranges of the device now).
func (b *backend) BlockStatus(ctx context.Context, name string, off, length int64, ext []nbd.Extent) ([]nbd.Extent, error) {
	var set extent.Set
	var flags uint32
	switch name {
	case nbd.BaseAllocation:
		set, flags = *b.d.holes.Load(), nbd.StateHole|nbd.StateZero
	case BadBlocksContext:
		r, err := b.x.eng.Badblocks(ctx, control.NameReq{Name: b.d.Name()})
		if err != nil {
			return ext, b.err(err)
		}
		set, flags = r.Ranges, BadBlock
	default:
		return ext, nil
	}
	lo := uint64(off) / stack.SectorSize
	hi := (uint64(off+length) + stack.SectorSize - 1) / stack.SectorSize
	for e := range set.Clip(lo, hi).Extents() {
		ext = append(ext, nbd.Extent{Offset: int64(e.Start * stack.SectorSize), Length: int64(e.Len * stack.SectorSize), Flags: flags})
	}
	return ext, nil
}

func (b *backend) Close() error {
	b.d.mu.Lock()
	if !b.closed {
		b.closed = true
		b.d.conns--
	}
	b.d.mu.Unlock()
	b.x.userGone(b.d.Name())
	return nil
}
