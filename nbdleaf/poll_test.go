package nbdleaf_test

import (
	"errors"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
)

// TestPollBadblocks serves a device on daxstack's own server with the
// daxstack:badblocks context and changes its bad ranges under the leaf:
// the leaf's poison follows within the poll interval, each change heard
// once; a write through the leaf clears on both sides; Clear writes
// zeroes; Inject is the far side's business.
func TestPollBadblocks(t *testing.T) {
	uri, m, _ := memExport(t, 1<<20, nbdtest.Options{Description: "uuid-poll"})
	ev := newEvents()
	o := opener(ev, nil)
	o.Poll = 50 * time.Millisecond
	l := open(t, o, uri)
	if l.PoisonSource() != nbdleaf.SourceRemote {
		t.Fatalf("poison source %q with a daxstack:badblocks server", l.PoisonSource())
	}
	if id := l.Identity(); id.Description != "uuid-poll" || id.Size != 1<<20 {
		t.Errorf("identity %+v", id)
	}

	follow := func(what string, want extent.Set) {
		t.Helper()
		d := waitFor(t, 5*time.Second, what, func() bool { return l.BadBlocks().Equal(want) })
		t.Logf("%s: followed in %v (poll %v)", what, d.Round(time.Millisecond), o.Poll)
	}
	m.Bad.Add(4096, 512)   // sector 8
	m.Bad.Add(10000, 3000) // bytes 10000-12999: sectors 19-25
	follow("bad ranges added", sectors(8, 1, 19, 7))
	p := make([]byte, 1024)
	if n, err := l.ReadAt(p, 3584); n != 512 {
		t.Errorf("read over a remote bad sector: %d bytes before it, want 512", n)
	} else {
		poisonAt(t, "read over a remote bad sector", err, extent.Extent{Start: 8, Len: 1})
	}

	m.Bad.Clear(4096, 512)
	follow("cleared on the far side", sectors(19, 7))

	if _, err := l.WriteAt(make([]byte, 7*512), 19*512); err != nil {
		t.Fatal(err)
	}
	if got := l.BadBlocks(); !got.Empty() {
		t.Errorf("poison right after a clearing write: %v", got)
	}
	if bad := m.Bad.List(); len(bad) != 0 {
		t.Errorf("far side still bad: %v", bad)
	}

	if err := l.Inject(sectors(100, 1)); !errors.Is(err, nbdleaf.ErrRemoteList) {
		t.Errorf("Inject on a remote list: %v", err)
	}
	m.Bad.Add(50*512, 1024)
	follow("bad again", sectors(50, 2))
	if err := l.Clear(sectors(50, 2)); err != nil {
		t.Fatal(err)
	}
	if bad := m.Bad.List(); len(bad) != 0 || !l.BadBlocks().Empty() {
		t.Errorf("after Clear: far side %v, leaf %v", bad, l.BadBlocks())
	}
	time.Sleep(3 * o.Poll) // later polls change nothing
	// Every sector made bad and cleared once (a poll may have split the
	// two additions of the far side into two changes).
	want := sectors(8, 1, 19, 7, 50, 2)
	ev.mu.Lock()
	if !ev.added.Equal(want) || !ev.cleared.Equal(want) || ev.sum != 2*want.Sectors() {
		t.Errorf("OnPoison heard %v: added %v, cleared %v, %d sectors in all", ev.poison, ev.added, ev.cleared, ev.sum)
	}
	ev.mu.Unlock()

	// SetPoison (a saved list) is corrected by the next poll.
	l.SetPoison(sectors(7, 3))
	follow("a restored list corrected", extent.Set{})
}

// TestNoPoll: with Poll negative the server's list is not read, and a
// server without the context leaves the list emulated.
func TestNoPoll(t *testing.T) {
	uri, m, _ := memExport(t, 1<<20, nbdtest.Options{})
	o := opener(nil, nil)
	o.Poll = -1
	l := open(t, o, uri)
	m.Bad.Add(0, 512)
	time.Sleep(200 * time.Millisecond)
	if got := l.BadBlocks(); !got.Empty() {
		t.Errorf("poison %v without polling", got)
	}

	plain, _, _ := memExport(t, 1<<20, nbdtest.Options{MetaContexts: []string{}})
	l2 := open(t, opener(nil, nil), plain)
	if l2.PoisonSource() != nbdleaf.SourceEmulated {
		t.Errorf("poison source %q without the context", l2.PoisonSource())
	}
	if err := l2.Inject(sectors(3, 2)); err != nil || !l2.BadBlocks().Equal(sectors(3, 2)) {
		t.Errorf("Inject on an emulated list: %v, %v", err, l2.BadBlocks())
	}
	if err := l2.Inject(sectors(4096, 1)); !errors.Is(err, nbdleaf.ErrRange) {
		t.Errorf("Inject past the end: %v", err)
	}
	if err := l2.Clear(sectors(0, 4)); err != nil || !l2.BadBlocks().Equal(sectors(4, 1)) {
		t.Errorf("Clear: %v, %v", err, l2.BadBlocks())
	}
}
