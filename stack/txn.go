package stack

// Txn records the pool's changes so that they can be undone together, for
// a caller (the engine) whose command must leave every run-time structure
// as it was when it fails: the devices, their tables in both slots, their
// suspended state, names, UUIDs, claims, and the leaves (a leaf is not
// closed, and a table that left its device is not destroyed, before
// Commit). One transaction runs at a time; the caller serialises the
// changes made during it.
//
// Rollback undoes the changes in reverse order. Undoing a table swap
// suspends the device again (waiting for its I/O in flight) to put the
// old table back; targets that saw the new table live saw what they saw.
//
// Suspend (SuspendContext) and Restart are not recorded: they wait for I/O
// and are made without the caller's lock, beside a transaction that may be
// running for another device; a caller undoes its suspend with Restart.
type Txn struct {
	p       *Pool
	undo    []func()
	retired []*Table
}

// Begin starts a transaction. It panics if one is running.
func (p *Pool) Begin() *Txn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.txn != nil {
		panic("stack: Begin inside a transaction")
	}
	p.txn = &Txn{p: p}
	return p.txn
}

// record notes how to undo a change, in a transaction. Called with p.mu
// held.
func (p *Pool) record(undo func()) {
	if p.txn != nil {
		p.txn.undo = append(p.txn.undo, undo)
	}
}

// Commit makes the changes final: the tables that left their devices are
// destroyed (Destructor) and the leaves nothing refers to are closed.
func (tx *Txn) Commit() {
	p := tx.p
	p.mu.Lock()
	if p.txn != tx {
		p.mu.Unlock()
		return
	}
	p.txn = nil
	retired := tx.retired
	tx.undo, tx.retired = nil, nil
	p.mu.Unlock()
	p.retire(retired...)
}

// Rollback undoes every change made since Begin, last first.
func (tx *Txn) Rollback() {
	p := tx.p
	p.mu.Lock()
	if p.txn != tx {
		p.mu.Unlock()
		return
	}
	p.txn = nil
	undo := tx.undo
	tx.undo, tx.retired = nil, nil
	p.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
	p.mu.Lock()
	p.sweep()
	p.mu.Unlock()
}
