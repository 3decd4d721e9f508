package serve

import (
	"context"
	"errors"
	"strings"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/export/blockdev"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/stack"
)

// beforeRemove is the engine's BeforeRemove hook: a device in use refuses
// its removal (and is watched for its last user, for remove --deferred);
// otherwise its export is torn down now, so that when remove returns the
// block device and its links are gone.
func (x *Exports) beforeRemove(ctx context.Context, name string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	err := x.remove(name, false)
	if errors.Is(err, stack.ErrBusy) {
		x.watch(name)
		return err
	}
	if err != nil {
		return err
	}
	x.torn[name] = true // until the Removed change comes (or settle puts it back)
	return nil
}

// settle is the engine's Settle hook: it waits until the exports follow
// every change made so far, and puts back an export torn down for a
// removal that did not happen.
func (x *Exports) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, SettleTimeout)
	defer cancel()
	x.q.wait(ctx)
	x.mu.Lock()
	defer x.mu.Unlock()
	for name := range x.torn {
		delete(x.torn, name)
		in, err := x.eng.Info(ctx, control.NameReq{Name: name})
		if err == nil && in.Live {
			x.add(name, in.Minor, in.Size, in.ReadOnly)
		}
	}
}

// freeze and thaw are the engine's Freeze and Thaw hooks: FIFREEZE and
// FITHAW of a filesystem mounted from the device's block device.
func (x *Exports) freeze(_ context.Context, name string) error {
	if x.bd == nil {
		return nil
	}
	_, err := x.bd.Freeze(name)
	if errors.Is(err, blockdev.ErrNotFound) {
		return nil
	}
	return err
}

func (x *Exports) thaw(_ context.Context, name string) error {
	if x.bd == nil {
		return nil
	}
	err := x.bd.Thaw(name)
	if errors.Is(err, blockdev.ErrNotFound) {
		return nil
	}
	if err != nil {
		x.o.Logf("daxstack: exports: thaw %s: %v", name, err)
	}
	return err
}

// resolve is the engine's Export hook: does ref name one of the exports?
// A link, the loop device or its number, a device file (blockdev.Resolve
// or devfs's), or an NBD URI of the unix socket.
func (x *Exports) resolve(ref string) (string, bool) {
	if x.bd != nil {
		if name, ok := x.bd.Resolve(ref); ok {
			return name, true
		}
	} else if x.fs != nil {
		if name, ok := x.fs.Resolve(ref); ok {
			return name, true
		}
	}
	if x.unx != nil && strings.HasPrefix(ref, "nbd") {
		if u, err := nbd.ParseURI(ref); err == nil && u.Network == "unix" && sameFile(u.Address, x.o.NBDSocket) {
			return u.Export, true
		}
	}
	return "", false
}
