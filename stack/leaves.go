package stack

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The pool is the one owner of leaves. A leaf is opened (through the
// pool's LeafOpener) when a table being built, a claim or an AcquireLeaf
// first names it, kept once per identity (Leaf.ID) however many references
// lead to it, and closed, if it implements io.Closer, when nothing refers
// to it any more: no table in either slot of any device, no table built to
// the side and not destroyed yet, no holder and no AcquireLeaf. Inside a
// transaction leaves are only closed at its Commit, so that a Rollback
// finds them open.

// Leaves returns every leaf the pool holds open, sorted by reference.
func (p *Pool) Leaves() []*Dev {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*Dev, 0, len(p.leaves))
	for _, d := range p.leaves {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Dev) int { return strings.Compare(a.Ref(), b.Ref()) })
	return out
}

// Leaf finds a leaf the pool holds by its ID.
func (p *Pool) Leaf(id string) (*Dev, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	d, ok := p.leaves[id]
	return d, ok
}

// Lookup resolves a device reference (as a table would name it) to a
// device the pool holds: a mapped device, or a leaf it holds open. It
// opens nothing for good: a reference to a leaf the pool does not hold is
// ErrNotFound.
func (p *Pool) Lookup(ref string) (*Dev, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d := p.lookupMapped(ref); d != nil {
		return &d.dev, nil
	}
	for _, l := range p.leaves {
		if l.leaf.Ref() == ref {
			return l, nil
		}
	}
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	d, ok := p.leaves[leaf.ID()]
	if !ok || d.leaf != leaf {
		closeLeaf(leaf)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s is not used by any table", ErrNotFound, ref)
	}
	return d, nil
}

// AcquireLeaf returns the leaf ref names, opening it if the pool does not
// hold it yet, and counts one more reference to it: it stays open until
// ReleaseLeaf, whatever the tables do. A mapped device's name is refused.
func (p *Pool) AcquireLeaf(ref string) (*Dev, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookupMapped(ref) != nil {
		return nil, fmt.Errorf("%w: %s is a mapped device, not a leaf", ErrInvalid, ref)
	}
	d, err := p.leafByRef(ref)
	if err != nil {
		return nil, err
	}
	p.refs[d]++
	return d, nil
}

// ReleaseLeaf drops a reference AcquireLeaf counted; the leaf is closed
// when nothing refers to it any more.
func (p *Pool) ReleaseLeaf(d *Dev) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refs[d] > 0 {
		p.refs[d]--
		if p.refs[d] == 0 {
			delete(p.refs, d)
		}
	}
	p.sweep()
}

// leafByRef returns the leaf ref names, registering it in the pool (with
// no reference yet: the caller counts one) when it is new. Called with
// p.mu held.
func (p *Pool) leafByRef(ref string) (*Dev, error) {
	if p.open == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	leaf, err := p.open(ref)
	if err != nil {
		return nil, err
	}
	if d, ok := p.leaves[leaf.ID()]; ok {
		if d.leaf != leaf {
			closeLeaf(leaf)
		}
		return d, nil
	}
	d := &Dev{leaf: leaf}
	p.leaves[leaf.ID()] = d
	return d, nil
}

// adopt registers leaves a build opened.
func (p *Pool) adopt(opened map[string]*Dev) {
	for id, l := range opened {
		p.leaves[id] = l
	}
}

// used reports whether anything refers to leaf d.
func (p *Pool) used(d *Dev) bool {
	return p.users[d] > 0 || p.refs[d] > 0 || p.holders[d] != ""
}

// sweep closes the leaves nothing refers to, unless a transaction runs
// (its Commit sweeps). Called with p.mu held.
func (p *Pool) sweep() {
	if p.txn != nil {
		return
	}
	for id, d := range p.leaves {
		if !p.used(d) {
			delete(p.leaves, id)
			closeLeaf(d.leaf)
		}
	}
}

func closeLeaf(l Leaf) {
	if c, ok := l.(io.Closer); ok {
		c.Close()
	}
}

// Close closes every leaf the pool holds. The pool must not be used after.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for id, l := range p.leaves {
		if c, ok := l.leaf.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		delete(p.leaves, id)
	}
	return errors.Join(errs...)
}
