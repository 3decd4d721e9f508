package serve

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
