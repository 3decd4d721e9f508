package flakey

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"
)

// TestStateSharesTheClock: a table rebuilt in another process and given
// the saved state is down and up at the same times as the first.
func TestStateSharesTheClock(t *testing.T) {
	e := newEnv(1)
	a := e.build(t, "a", "0 1024 flakey /dev/ram0 0 3 2")
	saved := a.State()
	e.clock.set(e.clock.Boottime() + 8*time.Second) // another process, later
	b := e.build(t, "b", "0 1024 flakey /dev/ram0 0 3 2")
	if !a.isDown() || b.isDown() {
		t.Fatalf("at +8s the first table should be down (8 %% 5 = 3) and a fresh one up: %v, %v", a.isDown(), b.isDown())
	}
	if err := b.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.State(), saved) {
		t.Errorf("state %v after restoring %v", b.State(), saved)
	}
	for s := range 20 {
		e.clock.set(e.clock.Boottime() + 500*time.Millisecond)
		if a.isDown() != b.isDown() {
			t.Fatalf("step %d: a down %v, b down %v", s, a.isDown(), b.isDown())
		}
	}
}

// TestStateAfterReboot: a state saved in another boot does not carry the
// clock over: it starts again at the restore, and State says so.
func TestStateAfterReboot(t *testing.T) {
	e := newEnv(1)
	a := e.build(t, "a", "0 1024 flakey /dev/ram0 0 10 10")
	saved := a.State()
	e.clock.reboot("boot-2", 3*time.Second)
	b := e.build(t, "b", "0 1024 flakey /dev/ram0 0 10 10")
	e.clock.set(25 * time.Second)
	if err := b.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(b.State(), saved) {
		t.Fatalf("the state of another boot was kept")
	}
	if b.began != 25*time.Second || b.bootID != "boot-2" {
		t.Errorf("restarted at %v in %q", b.began, b.bootID)
	}
	for _, tc := range []struct {
		at   time.Duration
		down bool
	}{{25 * time.Second, false}, {34 * time.Second, false}, {35 * time.Second, true}} {
		e.clock.set(tc.at)
		if b.isDown() != tc.down {
			t.Errorf("at %v: down %v", tc.at, b.isDown())
		}
	}
	// Restoring the new state again keeps it.
	c := e.build(t, "c", "0 1024 flakey /dev/ram0 0 10 10")
	if err := c.Restore(b.State()); err != nil || c.began != b.began {
		t.Errorf("restore of this boot's state: %v, began %v", err, c.began)
	}
}

func TestRestoreRefuses(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 10 10")
	good := f.State()
	for _, tc := range []struct {
		name  string
		state []byte
	}{
		{"nil", nil},
		{"short", good[:9]},
		{"no boot ID length", good[:9]},
		{"another version", append([]byte{2}, good[1:]...)},
		{"a start past int64", append(append([]byte{1}, 0xff, 0, 0, 0, 0, 0, 0, 0), good[9:]...)},
		{"boot ID longer than given", append(bytes.Clone(good[:9]), 7, 'a')},
		{"boot ID shorter than given", append(bytes.Clone(good), 'x')},
		{"boot ID over 64 bytes", append(append(bytes.Clone(good[:9]), 65), bytes.Repeat([]byte{'a'}, 65)...)},
		{"an unreadable length", append(bytes.Clone(good[:9]), 0x80)},
	} {
		err := f.Restore(tc.state)
		if err == nil || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: Restore = %v", tc.name, err)
		}
		if !bytes.Equal(f.State(), good) {
			t.Errorf("%s: changed the state", tc.name)
		}
	}
}

// TestSplit: pieces are flakey over the moved offset with every feature,
// and with the state the pieces share the clock.
func TestSplit(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 8 3 4 5 corrupt_bio_byte 32 w 1 0")
	p, err := f.Split(100, 50)
	if err != nil || p != "1:0 108 3 4 5 corrupt_bio_byte 32 w 1 0" {
		t.Fatalf("Split = %q, %v", p, err)
	}
	e.clock.set(e.clock.Boottime() + 2*time.Second)
	piece := e.build(t, "piece", "0 50 flakey "+p)
	if err := piece.Restore(f.State()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		e.clock.set(e.clock.Boottime() + time.Second)
		if piece.isDown() != f.isDown() {
			t.Fatal("the piece's clock is not the whole's")
		}
	}
	if m, _ := piece.Map(0); m.Sector != 108 {
		t.Errorf("piece maps 0 to %d", m.Sector)
	}
}
