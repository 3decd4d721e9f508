package control

import (
	"context"
	"fmt"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// Claim makes a holder the exclusive external holder of a device (mapped
// or a leaf), as bd_prepare_to_claim. Finding the device and claiming it
// are one step.
func (e *Engine) Claim(ctx context.Context, r ClaimReq) (ClaimResp, error) {
	var resp ClaimResp
	err := e.command(ctx, func() error {
		return e.runFor(ctx, func() error {
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
				e.op.leaves[l.ID()] = true
			}
			return nil
		})
	})
	return resp, err
}

// Release ends a claim (Holder "": whoever holds it).
func (e *Engine) Release(ctx context.Context, r ClaimReq) error {
	return e.command(ctx, func() error {
		return e.run(func() error {
			dev, err := e.pool.Lookup(r.Device)
			if err != nil {
				return opErr("", r.Device, nil, err)
			}
			ref := rmapchain.DevName(dev)
			if err := e.pool.Release(dev, r.Holder); err != nil {
				return opErr("", r.Device, nil, fmt.Errorf("release %s: %w", r.Device, err))
			}
			e.op.holders[ref] = nil
			return nil
		})
	})
}

// claimMode is how the engine claims block-device leaves (dax.ClaimMode).
// Both refuse a block device that is mounted or held exclusively by
// someone else. The daemon, which holds the stack for as long as it runs,
// also keeps every block-device leaf open with O_EXCL meanwhile, as
// device-mapper claims its children: mounting one (or any other exclusive
// open) fails with EBUSY. A command without the daemon lives for one
// command, so it can only check: nothing stops a mount between two
// commands, and a table stored then fails its leaf at the next command
// (a mounted leaf is not used: it stands in lost). A held device cannot
// be taken away either: losetup -d of a held loop device waits for its
// last opener (as under device-mapper), which a lost leaf stops being.
func claimMode(cfg Config) dax.ClaimMode {
	if cfg.Daemon && !cfg.NoHold {
		return dax.ClaimHold
	}
	return dax.ClaimCheck
}
