package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/export/blockdev"
	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/stack"
)

// SettleTimeout bounds how long a command waits for the exports to follow
// it (a device file whose I/O waits for a suspended device could hold the
// worker; the command then returns, and the export follows later).
const SettleTimeout = 10 * time.Second

// Exports is the running exports of an engine.
type Exports struct {
	eng *control.Engine
	o   Options
	fs  *devfs.FS         // nil: NoMount
	bd  *blockdev.Manager // nil: NoBlock
	nbd *nbd.Server
	unx *net.UnixListener
	tcp net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex // serialises changes to the exports
	idx  sync.RWMutex
	devs map[string]*device // guarded by idx (writes also hold mu)
	torn map[string]bool    // torn down by BeforeRemove; guarded by mu

	q queue

	bmu  sync.Mutex
	busy map[string]bool // refused as busy: watched for their last user
	poke chan struct{}

	stopWatch func()
}

// Start exports every live device of eng and keeps the exports following
// them until Close. It cleans up what a dead daemon left on the same
// mount and links first.
func Start(eng *control.Engine, o Options) (*Exports, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	x := &Exports{eng: eng, o: o, devs: map[string]*device{}, torn: map[string]bool{}, busy: map[string]bool{}, poke: make(chan struct{}, 1)}
	x.q.init()
	x.ctx, x.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			x.Close()
		}
	}()
	if !o.NoMount {
		if !o.NoBlock {
			left, err := blockdev.CleanLeftovers(o.Mount, o.blockOptions())
			if err != nil {
				o.Logf("daxstack: exports: cleaning a dead daemon's exports: %v", err)
			}
			for _, l := range left.Loops {
				o.Logf("daxstack: exports: detached %s, left by a dead daemon", l.Path)
			}
			for _, m := range left.Mounts {
				o.Logf("daxstack: exports: %s is still mounted from a dead daemon's loop device: its I/O fails; unmount it and mount it again on the new export", m)
			}
		}
		gid := uint32(0)
		if o.Group >= 0 {
			gid = uint32(o.Group)
		}
		fs, err := devfs.Mount(o.Mount, devfs.Options{Group: gid})
		if err != nil {
			return nil, err
		}
		x.fs = fs
		if !o.NoBlock {
			bd, err := blockdev.New(fs, o.blockOptions())
			if err != nil {
				return nil, err
			}
			x.bd = bd
		}
	}
	if !o.NoNBD {
		if err := x.startNBD(); err != nil {
			return nil, err
		}
	}
	now, stop := eng.Watch(x.q.push)
	x.stopWatch = stop
	eng.SetHooks(control.Hooks{
		BeforeRemove: x.beforeRemove,
		Freeze:       x.freeze,
		Thaw:         x.thaw,
		Settle:       x.settle,
		BlockDev:     x.blockDevName,
		Users:        x.users,
		MayClaim:     x.mayClaim,
		Export:       x.resolve,
	})
	x.mu.Lock()
	for _, d := range now {
		if d.Size > 0 {
			x.add(d.Device, d.Minor, d.Size, d.ReadOnly)
		}
	}
	x.mu.Unlock()
	x.claims()
	x.wg.Add(2)
	go func() { defer x.wg.Done(); x.work() }()
	go func() { defer x.wg.Done(); x.watchBusy() }()
	ok = true
	return x, nil
}

func (x *Exports) startNBD() error {
	log := slog.New(slog.DiscardHandler)
	ln, err := listenUnix(x.o.NBDSocket, x.o.Group)
	if err != nil {
		return err
	}
	x.unx = ln
	dir := nbdDir{x}
	x.nbd = &nbd.Server{Exports: dir, Log: log, Authorize: func(p *nbd.Peer) error {
		if !x.mayUse(p) {
			return nbd.ErrDenied
		}
		return nil
	}}
	x.serveNBD(x.nbd, ln)
	if x.o.NBDListen == "" {
		return nil
	}
	tl, err := net.Listen("tcp", x.o.NBDListen)
	if err != nil {
		return fmt.Errorf("nbd listen %s: %w", x.o.NBDListen, err)
	}
	x.tcp = tl
	srv := &nbd.Server{Exports: dir, Log: log}
	if !x.o.Insecure {
		cfg, err := tlsConfig(x.o.TLSCert, x.o.TLSKey, x.o.TLSCA)
		if err != nil {
			return err
		}
		srv.TLSConfig, srv.RequireTLS = cfg, true
	}
	x.serveNBD(srv, tl)
	return nil
}

func (x *Exports) serveNBD(srv *nbd.Server, ln net.Listener) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		if err := srv.Serve(x.ctx, ln); err != nil {
			x.o.Logf("daxstack: nbd: %v", err)
		}
	}()
}

// NBDAddr returns the TCP listener's address (nil without one).
func (x *Exports) NBDAddr() net.Addr {
	if x.tcp == nil {
		return nil
	}
	return x.tcp.Addr()
}

// Close stops following the engine and tears every export down: NBD
// connections end, loop devices are detached, links removed, the mount
// unmounted.
func (x *Exports) Close() error {
	if x.stopWatch != nil {
		x.stopWatch()
		x.eng.SetHooks(control.Hooks{})
	}
	x.q.close()
	x.cancel()
	x.wg.Wait()
	var errs []error
	x.mu.Lock()
	if x.bd != nil {
		errs = append(errs, x.bd.Close())
	}
	x.idx.Lock()
	for name, d := range x.devs {
		d.end()
		delete(x.devs, name)
	}
	x.idx.Unlock()
	if x.fs != nil {
		errs = append(errs, x.fs.Close())
	}
	x.mu.Unlock()
	return errors.Join(errs...)
}

// BlockDevice returns the block device (major, minor) exporting the
// mapped device name.
func (x *Exports) BlockDevice(name string) (major, minor uint32, ok bool) {
	if x == nil || x.bd == nil {
		return 0, 0, false
	}
	e, ok := x.bd.Lookup(name)
	if !ok {
		return 0, 0, false
	}
	return e.Loop.Dev.Major, e.Loop.Dev.Minor, true
}

// Export returns the block device of name as blockdev has it.
func (x *Exports) Export(name string) (blockdev.Export, bool) {
	if x.bd == nil {
		return blockdev.Export{}, false
	}
	return x.bd.Lookup(name)
}

func (x *Exports) blockDevName(name string) string {
	if e, ok := x.Export(name); ok {
		return e.Loop.Path
	}
	return ""
}

func (x *Exports) lookup(name string) *device {
	x.idx.RLock()
	defer x.idx.RUnlock()
	return x.devs[name]
}

// add exports a device (x.mu held). A failure is logged: the device stays
// and the command that made it succeeded, as with a udev rule failing.
func (x *Exports) add(name string, minor uint32, sectors uint64, ro bool) {
	if x.lookup(name) != nil {
		return
	}
	h, err := x.eng.OpenInternal(x.ctx, name, !ro)
	if err != nil {
		x.o.Logf("daxstack: exports: %s: %v", name, err)
		return
	}
	size := int64(sectors * stack.SectorSize)
	d := newDevice(name, minor, size, ro, h)
	x.setHoles(d)
	if x.fs != nil {
		a := devfs.Attr{Size: size, ReadOnly: ro, Ino: uint64(minor) + 2}
		if x.bd != nil {
			_, err = x.bd.Add(name, file{d}, a)
		} else {
			err = x.fs.Add(name, file{d}, a)
		}
		if err != nil {
			x.o.Logf("daxstack: exports: %s: %v", name, err)
			h.Close()
			return
		}
	}
	x.idx.Lock()
	x.devs[name] = d
	x.idx.Unlock()
}

// setHoles notes the zero segments of d's table, for base:allocation.
func (x *Exports) setHoles(d *device) {
	t, err := x.eng.Table(x.ctx, control.TableReq{Name: d.Name()})
	if err != nil {
		return
	}
	s := zeroHoles(t)
	d.holes.Store(&s)
}

// remove ends the export of name (x.mu held). Unforced, a device in use
// is refused with an error matching stack.ErrBusy and nothing changes.
func (x *Exports) remove(name string, force bool) error {
	d := x.lookup(name)
	if d == nil {
		return nil
	}
	if !force {
		if n := d.nbdConns(); n > 0 {
			return fmt.Errorf("%w: %s has %d NBD connection(s)", stack.ErrBusy, name, n)
		}
	}
	var err error
	switch {
	case x.bd != nil:
		var r blockdev.Removed
		r, err = x.bd.Remove(name, force)
		if err == nil && r.Deferred {
			x.o.Logf("daxstack: exports: %s: a process still has its block device open; the loop device detaches when it closes it", name)
		}
	case x.fs != nil:
		err = x.fs.Remove(name, force)
	}
	if err != nil && !force {
		if errors.Is(err, blockdev.ErrBusy) || errors.Is(err, devfs.ErrBusy) {
			return fmt.Errorf("%w: %v", stack.ErrBusy, err)
		}
		return err
	}
	if err != nil {
		x.o.Logf("daxstack: exports: %s: %v", name, err)
	}
	x.idx.Lock()
	delete(x.devs, name)
	x.idx.Unlock()
	d.end()
	return nil
}

func (x *Exports) rename(old, new string) {
	d := x.lookup(old)
	if d == nil {
		return
	}
	var err error
	switch {
	case x.bd != nil:
		err = x.bd.Rename(old, new)
	case x.fs != nil:
		err = x.fs.Rename(old, new)
	}
	if err != nil {
		// The files keep the old name; the NBD export follows the device.
		x.o.Logf("daxstack: exports: rename %s to %s: %v", old, new, err)
	}
	x.idx.Lock()
	delete(x.devs, old)
	d.name.Store(&new)
	x.devs[new] = d
	x.idx.Unlock()
}

func (x *Exports) resize(name string, sectors uint64) {
	d := x.lookup(name)
	if d == nil {
		return
	}
	size := int64(sectors * stack.SectorSize)
	x.setHoles(d)
	if d.size.Load() == size {
		return
	}
	var err error
	switch {
	case x.bd != nil:
		err = x.bd.Resize(name, size)
	case x.fs != nil:
		err = x.fs.Resize(name, size)
	}
	if err != nil {
		x.o.Logf("daxstack: exports: resize %s: %v", name, err)
	}
	d.size.Store(size)
}

func (x *Exports) setReadOnly(name string, ro bool) {
	d := x.lookup(name)
	if d == nil || d.ro.Load() == ro {
		return
	}
	if !ro && d.handle().ReadOnly() {
		h, err := x.eng.OpenInternal(x.ctx, name, true)
		if err != nil {
			x.o.Logf("daxstack: exports: %s: %v", name, err)
			return
		}
		d.setHandle(h)
	}
	var err error
	switch {
	case x.bd != nil:
		err = x.bd.SetReadOnly(name, ro)
	case x.fs != nil:
		err = x.fs.SetReadOnly(name, ro)
	}
	if err != nil {
		x.o.Logf("daxstack: exports: %s: read-only %v: %v", name, ro, err)
	}
	d.ro.Store(ro)
}
