package stack

import "os"

// The pool keeps a compiled map (see Compiled) of every mapped device with
// an active table, in p.maps, and publishes each in its device's cmap when
// the I/O path may use it, by the rules of CompiledMaps:
//
//   - quiesce unpublishes the maps of the device and of every device above
//     it, then sets its suspended flag, both under p.mu;
//   - a table swap (swap, unresume, the undo of a remove) rebuilds the maps
//     of the device and of every device above it under p.mu, while the
//     device is still suspended;
//   - running (the end of every resume, restart and failed suspend) clears
//     the flag and publishes, under p.mu, every map above the device that
//     no suspended device lies under;
//   - a removal forgets the device's map.
//
// So a published map is exact for the active tables under it until the
// next suspend of any of them, and that suspend waits (gate.synchronize)
// for every I/O that loaded the map.

// unpublishAbove takes the maps of d and of every device above it off the
// I/O path. Called with p.mu held, before d's suspended flag is set.
func (p *Pool) unpublishAbove(d *Device) {
	for _, a := range p.maps.Above(d) {
		a.cmap.Store(nil)
	}
}

// publishAbove publishes the maps of d and of every device above it that
// may be used (CompiledMaps.Publishable). Called with p.mu held.
func (p *Pool) publishAbove(d *Device) {
	if p.noCompiled {
		return
	}
	for _, a := range p.maps.Above(d) {
		if !a.removed.Load() && p.maps.Publishable(a) {
			a.cmap.Store(p.maps.Get(a))
		}
	}
}

// running lets suspended device d run again: its flag is cleared, the maps
// it held back are published, and the I/O parked on it goes on. Called
// without p.mu.
func (p *Pool) running(d *Device) {
	p.mu.Lock()
	d.suspended.Store(false)
	p.publishAbove(d)
	p.mu.Unlock()
	p.broadcast()
}

// SetCompiledMaps turns compiled maps on (the default) or off. Off, no
// map is built or kept, and every request walks the stack one level at a
// time as it did before compiled maps existed; on again, every device's
// map is built at once. It is for benchmarks and tests that compare the
// two, and for ruling the compiled path out. A new pool starts with them
// off when the environment has DAXSTACK_COMPILED_MAPS=off.
func (p *Pool) SetCompiledMaps(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noCompiled == !on {
		return
	}
	p.noCompiled = !on
	for _, d := range p.byName {
		d.cmap.Store(nil)
	}
	p.maps = NewCompiledMaps()
	if !on {
		return
	}
	devs := make([]*Device, 0, len(p.byName))
	for _, d := range p.byName {
		devs = append(devs, d)
	}
	p.maps.Update(devs...)
	for _, d := range devs {
		if p.maps.Publishable(d) {
			d.cmap.Store(p.maps.Get(d))
		}
	}
}

// rebuild rebuilds the maps a table swap of d changed (CompiledMaps.Update),
// unless compiled maps are off. Called with p.mu held, d suspended.
func (p *Pool) rebuild(d *Device) {
	if !p.noCompiled {
		p.maps.Update(d)
	}
}

// compiledOff reports whether the environment turns compiled maps off
// for new pools (DAXSTACK_COMPILED_MAPS=off).
func compiledOff() bool { return os.Getenv("DAXSTACK_COMPILED_MAPS") == "off" }

// CompiledMap returns d's published compiled map: the one the I/O path
// uses now, or nil when it walks d's stack one level at a time (d, or a
// device below it, is suspended, or SetCompiledMaps turned them off).
func (d *Device) CompiledMap() *Compiled { return d.cmap.Load() }
