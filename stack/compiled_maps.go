package stack

import "slices"

// CompiledMaps keeps the compiled map of every mapped device of a pool
// and, after a table swap, rebuilds exactly the maps the swap changed: the
// swapped device's and those of every device above it. Maps of devices
// beside or below it are kept (the same pointers).
//
// It is not safe for concurrent use: its caller serialises it with table
// swaps (the pool's lock). The maps it returns are immutable and may be
// read by any number of goroutines.
//
// # Keeping I/O off stale maps
//
// A map is exact for the tables it was built from, so the I/O path may use
// a device's map only while no device the map flattens can change table.
// The rule that gives this with the gate (see gate), for a published map
// per device (an atomic pointer, nil when unpublished):
//
//   - I/O: after gate.enter, load the top device's published map once; if
//     it is nil, take the per-level walk (which parks at a suspended
//     device). Otherwise use that map, and the maps it leads to (Next,
//     Step, Child), for the whole section without looking at any
//     suspended flag below the top.
//   - Suspend(d): unpublish the maps of Above(d) (d and every device
//     whose map depends on d), set d's suspended flag, then
//     gate.synchronize as today. An I/O that loaded a map before the
//     unpublish entered the gate before synchronize and is waited for; one
//     that enters after sees nil (atomics are sequentially consistent in
//     Go, as for the suspended flag).
//   - Resume(d), with a table to swap: swap the table while d is
//     suspended (as today), then Update(d) before anything is published:
//     the maps of Above(d) are rebuilt from the new tables. Then clear
//     d's suspended flag and wake parked I/O, and publish the rebuilt map
//     of every device in Above(d) for which Publishable is true (no device
//     in its Below is suspended). Without a table to swap, skip Update and
//     publish the same way.
//   - Remove(d): unpublish d's map (nothing uses d) and Forget(d).
//   - Load and Clear change only inactive tables: nothing to do.
//
// So a section that holds a map saw none of the devices it flattens
// suspended, and every swap below waits for the section to end: no I/O
// sees a mix of tables, and none passes a suspended device.
type CompiledMaps struct {
	maps  map[*Device]*Compiled
	users map[*Device][]*Device // devices whose maps have the key as a child
}

// NewCompiledMaps returns an empty set of maps.
func NewCompiledMaps() *CompiledMaps {
	return &CompiledMaps{maps: map[*Device]*Compiled{}, users: map[*Device][]*Device{}}
}

// Get returns d's map, or nil if it has none.
func (s *CompiledMaps) Get(d *Device) *Compiled { return s.maps[d] }

// Update rebuilds, from the active tables, the maps of devs and of every
// device above them, children before parents, and builds the missing maps
// of devices below them. It returns the devices whose maps it built,
// children first.
func (s *CompiledMaps) Update(devs ...*Device) []*Device {
	redo := map[*Device]bool{}
	for _, d := range devs {
		for _, a := range s.Above(d) {
			redo[a] = true
		}
	}
	var built []*Device
	state := map[*Device]uint8{} // 1 visiting, 2 done
	var visit func(d *Device)
	visit = func(d *Device) {
		if state[d] != 0 {
			return // done, or a cycle (refused at load; the map gets a step)
		}
		state[d] = 1
		t := d.active.Load()
		for _, ch := range t.children() {
			if md := ch.md; md != nil && (redo[md] || s.maps[md] == nil) {
				visit(md)
			}
		}
		s.set(d, compile(d, t, func(k *Device) *Compiled {
			if state[k] == 1 {
				return nil
			}
			return s.maps[k]
		}))
		built = append(built, d)
		state[d] = 2
	}
	// Visit in a fixed order so that builds are reproducible.
	order := make([]*Device, 0, len(redo))
	for d := range redo {
		order = append(order, d)
	}
	slices.SortFunc(order, func(a, b *Device) int { return int(a.minor) - int(b.minor) })
	for _, d := range order {
		visit(d)
	}
	return built
}

// set installs d's map and keeps the users index.
func (s *CompiledMaps) set(d *Device, c *Compiled) {
	if old := s.maps[d]; old != nil {
		for _, k := range old.kids {
			s.users[k.dev] = slices.DeleteFunc(s.users[k.dev], func(u *Device) bool { return u == d })
			if len(s.users[k.dev]) == 0 {
				delete(s.users, k.dev)
			}
		}
	}
	s.maps[d] = c
	for _, k := range c.kids {
		if !slices.Contains(s.users[k.dev], d) {
			s.users[k.dev] = append(s.users[k.dev], d)
		}
	}
}

// Forget drops d's map (d is being removed; nothing uses it).
func (s *CompiledMaps) Forget(d *Device) {
	if old := s.maps[d]; old != nil {
		for _, k := range old.kids {
			s.users[k.dev] = slices.DeleteFunc(s.users[k.dev], func(u *Device) bool { return u == d })
			if len(s.users[k.dev]) == 0 {
				delete(s.users, k.dev)
			}
		}
	}
	delete(s.maps, d)
}

// Above returns d and every device whose map depends on d's table,
// directly or through other maps: the maps a suspend or a swap of d
// affects. d comes first.
func (s *CompiledMaps) Above(d *Device) []*Device {
	out := []*Device{d}
	seen := map[*Device]bool{d: true}
	for i := 0; i < len(out); i++ {
		for _, u := range s.users[out[i]] {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// Below returns d and every mapped device d's map depends on.
func (s *CompiledMaps) Below(d *Device) []*Device {
	out := []*Device{d}
	seen := map[*Device]bool{d: true}
	for i := 0; i < len(out); i++ {
		if c := s.maps[out[i]]; c != nil {
			for _, k := range c.kids {
				if !seen[k.dev] {
					seen[k.dev] = true
					out = append(out, k.dev)
				}
			}
		}
	}
	return out
}

// Publishable reports whether d's map may be published: it exists and no
// device it depends on (d included) is suspended.
func (s *CompiledMaps) Publishable(d *Device) bool {
	if s.maps[d] == nil {
		return false
	}
	for _, b := range s.Below(d) {
		if b.suspended.Load() {
			return false
		}
	}
	return true
}

// Current reports whether c is exact for the present active tables: it
// was built from its device's active table, and every map below it from
// theirs. It is for checks and tests; the I/O path relies on the rules
// above instead.
func (c *Compiled) Current() bool {
	seen := map[*Compiled]bool{}
	var ok func(c *Compiled) bool
	ok = func(c *Compiled) bool {
		if seen[c] {
			return true
		}
		seen[c] = true
		if c.dev.active.Load() != c.table {
			return false
		}
		for _, k := range c.kids {
			if k.m == nil || !ok(k.m) {
				return false
			}
		}
		return true
	}
	return ok(c)
}
