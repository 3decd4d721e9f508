package serve

import "github.com/daxstack/daxstack/control"

// work applies the engine's changes in commit order.
func (x *Exports) work() {
	for {
		cs, ok := x.q.take()
		if !ok {
			return
		}
		x.mu.Lock()
		for _, c := range cs {
			x.apply(c)
		}
		x.mu.Unlock()
		x.claims()
		x.q.applied(len(cs))
	}
}

// apply follows one change (x.mu held).
func (x *Exports) apply(c control.DeviceChange) {
	switch c.Kind {
	case control.Created:
		if c.Size > 0 {
			x.add(c.Device, c.Minor, c.Size, c.ReadOnly)
		}
	case control.Swapped:
		if x.lookup(c.Device) == nil {
			if c.Size > 0 {
				x.add(c.Device, c.Minor, c.Size, x.readOnly(c.Device))
			}
			return
		}
		x.resize(c.Device, c.Size)
	case control.Removed:
		delete(x.torn, c.Device)
		x.remove(c.Device, true)
	case control.Renamed:
		if x.torn[c.OldName] {
			delete(x.torn, c.OldName)
			x.torn[c.Device] = true
		}
		x.rename(c.OldName, c.Device)
	case control.ReadOnly:
		x.setReadOnly(c.Device, c.ReadOnly)
	}
	// Suspended and Resumed need nothing: I/O waits in the engine.
}

// readOnly asks the engine whether a device is read-only now.
func (x *Exports) readOnly(name string) bool {
	in, err := x.eng.Info(x.ctx, control.NameReq{Name: name})
	return err == nil && in.ReadOnly
}
