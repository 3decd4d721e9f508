package serve

import "github.com/daxstack/daxstack/export/blockdev"

// mayClaim is the engine's MayClaim hook: a device whose block device is
// in use outside daxstack (mounted, held exclusively) cannot go under a
// table, as the kernel's dm refuses a child it cannot open exclusively.
func (x *Exports) mayClaim(name string) error {
	if x.bd == nil {
		return nil
	}
	u, err := x.bd.Usage(name)
	if err != nil {
		return nil // not exported (yet): nothing outside can use it
	}
	if len(u.Mounts) > 0 || u.Exclusive {
		return &blockdev.BusyError{Name: name, Usage: u}
	}
	return nil
}

// claims holds the block device of every device another table uses with
// O_EXCL (blockdev.Claim), as the kernel does for a device-mapper table's
// devices, and lets go of the others: while a table above lives, the
// device below can't be mounted or opened exclusively.
func (x *Exports) claims() {
	if x.bd == nil {
		return
	}
	list, err := x.eng.List(x.ctx)
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, in := range list {
		for _, dep := range in.Deps {
			if dep.Mapped {
				used[dep.Name] = true
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range x.bd.List() {
		switch {
		case used[e.Name] && !e.Claimed:
			if err := x.bd.Claim(e.Name); err != nil {
				x.o.Logf("daxstack: exports: claiming %s for the table above it: %v", e.Name, err)
			}
		case !used[e.Name] && e.Claimed:
			if err := x.bd.Unclaim(e.Name); err != nil {
				x.o.Logf("daxstack: exports: %s: %v", e.Name, err)
			}
		}
	}
}
