package stack_test

import (
	"testing"

	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestTxnRollback: every change a transaction records is undone by its
// Rollback: devices created and removed, tables loaded and swapped (the
// new ones destroyed, the old ones kept), names, UUIDs and claims; I/O
// goes on through the restored tables. Commit destroys what left.
func TestTxnRollback(t *testing.T) {
	p, l := ioPool(t)
	c := newCtl(t, "c")
	line := "0 64 fake /l 0 " + ctlRef(t, "c")
	d := stacktest.MustCreate(t, p, "d", line)
	gone := stacktest.MustCreate(t, p, "gone", "0 8 linear /l 100")
	old := d.Active()
	l.Data()[0] = 42
	destroyed := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, k := range c.dtrs {
			n += k
		}
		return n
	}

	tx := p.Begin()
	n, err := p.Create("new", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return p.LoadText(n, "0 8 zero", "") },
		func() error { return p.Resume(n) },
		func() error { return p.LoadText(d, line+"\n64 8 zero", "") },
		func() error { return p.Resume(d) },
		func() error { return p.Rename(d, "renamed") },
		func() error { return p.SetUUID(d, "u-1") },
		func() error { return p.Claim(gone.Dev(), "me") },
		func() error { return p.Release(gone.Dev(), "me") },
		func() error { return p.Remove(gone) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if d.Size() != 72 || d.Name() != "renamed" || destroyed() != 0 {
		t.Fatalf("before the rollback: size %d, name %s, %d destroyed", d.Size(), d.Name(), destroyed())
	}
	tx.Rollback()
	if _, err := p.Device("new"); err == nil {
		t.Error("the created device survived the rollback")
	}
	if g, err := p.Device("gone"); err != nil || g != gone || gone.Removed() || gone.Size() != 8 {
		t.Errorf("the removed device is not back: %v", err)
	}
	if d.Name() != "d" || d.UUID() != "" || d.Active() != old || d.Inactive() != nil || d.Suspended() {
		t.Errorf("d after the rollback: %s %q active=%v inactive=%v suspended=%v", d.Name(), d.UUID(), d.Active() == old, d.Inactive(), d.Suspended())
	}
	if p.Holder(gone.Dev()) != "" {
		t.Error("the claim survived")
	}
	if destroyed() != 1 { // the table loaded into d and rolled back; not d's own
		t.Errorf("%d targets destroyed by the rollback, want 1", destroyed())
	}
	buf := make([]byte, 1)
	if _, err := d.ReadAt(buf, 0); err != nil || buf[0] != 42 {
		t.Fatalf("I/O through the restored table: %v, %d", err, buf[0])
	}

	// A committed swap destroys the table that left, at the commit.
	tx = p.Begin()
	if err := p.LoadText(d, line, ""); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(d); err != nil {
		t.Fatal(err)
	}
	if destroyed() != 1 {
		t.Fatal("a table was destroyed before the commit")
	}
	tx.Commit()
	if destroyed() != 2 {
		t.Fatalf("%d destroyed after the commit, want 2", destroyed())
	}
}
