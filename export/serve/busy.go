package serve

import (
	"os"
	"time"
)

// Users the engine can't see (a mounted filesystem, an NBD client, a
// client of the device file) go without telling anyone. A device refused
// as busy is watched until its last one went; then the engine hears of it
// (Engine.Unused), and a remove --deferred happens.

// busyPoll is how often busy devices are looked at.
const busyPoll = 100 * time.Millisecond

func (x *Exports) watch(name string) {
	x.bmu.Lock()
	x.busy[name] = true
	x.bmu.Unlock()
}

// userGone is told when an NBD connection ends.
func (x *Exports) userGone(name string) {
	x.bmu.Lock()
	watched := x.busy[name]
	x.bmu.Unlock()
	if watched {
		select {
		case x.poke <- struct{}{}:
		default:
		}
	}
}

func (x *Exports) watchBusy() {
	t := time.NewTicker(busyPoll)
	defer t.Stop()
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-t.C:
		case <-x.poke:
		}
		x.bmu.Lock()
		var names []string
		for n := range x.busy {
			names = append(names, n)
		}
		x.bmu.Unlock()
		for _, n := range names {
			if x.inUse(n) {
				continue
			}
			x.bmu.Lock()
			delete(x.busy, n)
			x.bmu.Unlock()
			x.eng.Unused(x.ctx, n)
		}
	}
}

// users is the engine's Users hook: the users of name's exports that info
// counts in Open (NBD connections, mounts, holders, device-file opens).
func (x *Exports) users(name string) int {
	d := x.lookup(name)
	if d == nil {
		return 0
	}
	n := d.nbdConns()
	switch {
	case x.bd != nil:
		if k, err := x.bd.Openers(name); err == nil {
			n += k
		}
	case x.fs != nil:
		if k, err := x.fs.Users(name); err == nil {
			n += k
		}
	}
	return n
}

// inUse reports whether anything the engine can't see uses name's export.
func (x *Exports) inUse(name string) bool {
	d := x.lookup(name)
	if d == nil {
		return false
	}
	if d.nbdConns() > 0 {
		return true
	}
	if x.bd != nil {
		u, err := x.bd.Usage(name)
		return err == nil && u.InUse()
	}
	if x.fs != nil {
		n, err := x.fs.Users(name)
		return err == nil && n > 0
	}
	return false
}

// sameFile reports whether two paths name the same file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
