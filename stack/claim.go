package stack

import "fmt"

// Claim makes holder the exclusive external holder of dev, as
// bd_prepare_to_claim does. It fails with ErrBusy if dev has a holder or is
// used by a mapped device's table; a leaf may be shared by many mapped
// devices, but not by a mapped device and an external holder.
func (p *Pool) Claim(dev *Dev, holder string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.claim(dev, holder)
}

func (p *Pool) claim(dev *Dev, holder string) error {
	if holder == "" {
		return fmt.Errorf("%w: empty holder name", ErrInvalid)
	}
	if md := dev.md; md != nil {
		if err := p.checkLive(md); err != nil {
			return err
		}
	}
	if h, ok := p.holders[dev]; ok {
		if h == holder {
			return nil
		}
		return fmt.Errorf("%w: %s is held by %s", ErrBusy, dev.Name(), h)
	}
	if users := p.usersOf(dev); len(users) > 0 {
		return fmt.Errorf("%w: %s is used by mapped device %s", ErrBusy, dev.Name(), users[0].Name())
	}
	p.holders[dev] = holder
	p.record(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.holders[dev] == holder {
			delete(p.holders, dev)
			p.sweep()
		}
	})
	return nil
}

// ClaimLeaf claims the device ref names for holder: a mapped device, or a
// leaf (opened if the pool does not hold it yet). Finding and claiming are
// one step: no table can start using the leaf in between.
func (p *Pool) ClaimLeaf(ref, holder string) (*Dev, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.lookupMapped(ref); d != nil {
		return &d.dev, p.claim(&d.dev, holder)
	}
	dev, err := p.leafByRef(ref)
	if err != nil {
		return nil, err
	}
	if err := p.claim(dev, holder); err != nil {
		p.sweep() // a leaf opened for the claim alone
		return nil, err
	}
	return dev, nil
}

// Release ends holder's claim on dev ("" : whoever holds it). Releasing a
// claim one does not hold is an error.
func (p *Pool) Release(dev *Dev, holder string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.holders[dev]
	if !ok || (holder != "" && h != holder) {
		return fmt.Errorf("%w: %s is not held by %s", ErrNotFound, dev.Name(), holder)
	}
	delete(p.holders, dev)
	p.record(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, taken := p.holders[dev]; !taken {
			p.holders[dev] = h
		}
	})
	p.sweep()
	return nil
}

// Holder returns dev's external holder, or "".
func (p *Pool) Holder(dev *Dev) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.holders[dev]
}
