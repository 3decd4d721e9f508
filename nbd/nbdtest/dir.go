package nbdtest

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/daxstack/daxstack/nbd"
)

// Options say how a Dir exports a device.
type Options struct {
	Description  string
	ReadOnly     bool
	Features     *nbd.Features // nil: the device's own
	BlockSizes   nbd.BlockSizes
	MetaContexts []string // nil: BadContext
	// MaxParallel is passed on as the export's MaxParallel.
	MaxParallel int
	// Deny, if set, refuses peers (nbd.ErrDenied) for which it is true.
	Deny func(*nbd.Peer) bool
}

// Dir is an nbd.Exports directory whose exports tests add and remove
// while a server runs.
type Dir struct {
	mu      sync.Mutex
	exports map[string]*entry
	opens   atomic.Int64
}

type entry struct {
	dev  Device
	opt  Options
	gone chan struct{}
	open atomic.Int64
}

// Add exports dev as name, replacing an export of that name.
func (d *Dir) Add(name string, dev Device, opt Options) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.exports == nil {
		d.exports = map[string]*entry{}
	}
	if old := d.exports[name]; old != nil {
		close(old.gone)
	}
	d.exports[name] = &entry{dev: dev, opt: opt, gone: make(chan struct{})}
}

// Remove ends the export name: new connections cannot open it and the
// open handles fail with nbd.ErrExportGone.
func (d *Dir) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.exports[name]; e != nil {
		close(e.gone)
		delete(d.exports, name)
	}
}

// Handles counts the handles of name open now.
func (d *Dir) Handles(name string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.exports[name]; e != nil {
		return e.open.Load()
	}
	return 0
}

// Opens counts every open of any export so far.
func (d *Dir) Opens() int64 { return d.opens.Load() }

// Open implements nbd.Exports.
func (d *Dir) Open(_ context.Context, p *nbd.Peer, name string) (*nbd.Export, error) {
	d.mu.Lock()
	e := d.exports[name]
	d.mu.Unlock()
	if e == nil {
		return nil, nbd.ErrUnknownExport
	}
	if e.opt.Deny != nil && e.opt.Deny(p) {
		return nil, nbd.ErrDenied
	}
	feat := e.dev.Features()
	if e.opt.Features != nil {
		feat = *e.opt.Features
	}
	meta := e.opt.MetaContexts
	if meta == nil {
		meta = []string{BadContext}
	}
	e.open.Add(1)
	d.opens.Add(1)
	return &nbd.Export{
		Name:         name,
		Description:  e.opt.Description,
		Size:         e.dev.Size(),
		ReadOnly:     e.opt.ReadOnly,
		Features:     feat,
		BlockSizes:   e.opt.BlockSizes,
		MetaContexts: meta,
		MaxParallel:  e.opt.MaxParallel,
		Backend:      &counted{Backend: e.dev.Handle(e.gone), e: e},
	}, nil
}

// List implements nbd.Exports.
func (d *Dir) List(_ context.Context, p *nbd.Peer) ([]nbd.ExportInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []nbd.ExportInfo
	for name, e := range d.exports {
		if e.opt.Deny != nil && e.opt.Deny(p) {
			continue
		}
		out = append(out, nbd.ExportInfo{Name: name, Description: e.opt.Description})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// counted counts its entry's open handles.
type counted struct {
	nbd.Backend
	e      *entry
	closed atomic.Bool
}

func (c *counted) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.e.open.Add(-1)
	}
	return c.Backend.Close()
}
