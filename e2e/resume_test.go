package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seqCheck checks a subscriber's sequence numbers against the log's last:
// every number from first to last is there (no gap), in order but for
// re-deliveries, and each at most maxCopies times.
func seqCheck(t *testing.T, who string, got []event, first, last uint64, maxCopies int) {
	t.Helper()
	count := map[uint64]int{}
	var high uint64
	redelivered := 0
	for _, ev := range got {
		count[ev.Seq]++
		if ev.Seq <= high {
			redelivered++
		} else if high > 0 && ev.Seq != high+1 {
			t.Errorf("%s: event %d after %d: a gap", who, ev.Seq, high)
		}
		high = max(high, ev.Seq)
	}
	for seq := first; seq <= last; seq++ {
		switch n := count[seq]; {
		case n == 0:
			t.Errorf("%s: event %d never delivered", who, seq)
		case n > maxCopies:
			t.Errorf("%s: event %d delivered %d times (at most %d allowed)", who, seq, n, maxCopies)
		}
	}
	if len(got) > 0 && got[0].Seq != first {
		t.Errorf("%s: first event %d, want %d", who, got[0].Seq, first)
	}
	if high != last {
		t.Errorf("%s: last event %d, want %d", who, high, last)
	}
	t.Logf("%s: %d events, %d re-delivered", who, len(got), redelivered)
}

// TestDaemonResume: a watcher (`watch --since 0`) and a holder follow the
// log across daemon restarts by SIGTERM and by SIGKILL, with events also
// committed while no daemon runs: neither misses an event, and neither
// sees one twice across a SIGTERM; the holder's claim lasts through the
// restarts. Then a new `watch --since LAST` starts exactly after LAST.
func TestDaemonResume(t *testing.T) {
	t.Parallel()
	s := newQuickSandbox(t)
	leaf := s.file("leaf.img", 8<<20)
	s.run("create", "top", "--table", "0 16384 linear "+leaf+" 0")
	args := []string{"--no-uevents", "--rescan", "1h"}
	d := s.startDaemon(args...)
	w := s.watch("--since", "0")
	holder := s.startBg("hold", "top")
	holderName := fmt.Sprintf("hold:%d", holder.pid())
	pollUntil(t, 10*time.Second, "top held", func() bool { return s.holderOf("top") == holderName })

	sector := 0
	inject := func() {
		t.Helper()
		s.run("inject", "top", "--sector", fmt.Sprint(sector), "--count", "1")
		sector += 16
	}
	// Each round: events through the daemon, a restart, an event committed
	// by an embedded command while no daemon runs, more through the new
	// daemon.
	restart := func(how string) {
		t.Helper()
		inject()
		inject()
		if how == "SIGKILL" {
			d.kill9()
		} else {
			d.stop()
		}
		inject() // no daemon: the command opens the database itself
		d = s.startDaemon(args...)
		inject()
		if got := s.holderOf("top"); got != holderName {
			t.Errorf("after a %s restart top is held by %q, want %q", how, got, holderName)
		}
	}
	lastOf := func() uint64 {
		t.Helper()
		evs := s.loggedEvents()
		if len(evs) == 0 {
			t.Fatal("empty log")
		}
		return evs[len(evs)-1].Seq
	}
	waitSeq := func(seq uint64) {
		t.Helper()
		w.wait(t, 10*time.Second, fmt.Sprintf("seq %d at the watcher", seq), func(e event) bool { return e.Seq == seq })
		holder.waitEvent(10*time.Second, fmt.Sprintf("top's event up to %d at the holder", seq), func(e event) bool { return e.Seq == seq })
	}

	restart("SIGTERM")
	restart("SIGTERM")
	termLast := lastOf()
	waitSeq(termLast)
	seqCheck(t, "watcher across SIGTERM restarts", w.all(), 1, termLast, 1)

	restart("SIGKILL")
	restart("SIGKILL")
	last := lastOf()
	waitSeq(last)
	// Each injection logs the leaf's event, then top's.
	seqCheck(t, "watcher across SIGKILL restarts", w.all(), 1, last, 2)
	topSeqs := s.loggedEvents("top")
	got := map[uint64]int{}
	for _, ev := range holder.events() {
		got[ev.Seq]++
		if ev.Device != "top" {
			t.Errorf("the holder of top got %+v", ev)
		}
	}
	for _, ev := range topSeqs {
		if got[ev.Seq] == 0 {
			t.Errorf("the holder never got top's event %d", ev.Seq)
		}
	}
	if len(topSeqs) != sector/16 {
		t.Errorf("the log has %d events for top after %d injections", len(topSeqs), sector/16)
	}

	// The watcher stops; a new one resumes after the last it printed.
	w.cmd.Process.Signal(syscall.SIGTERM)
	w.cmd.Wait()
	all := w.all()
	resumeAt := all[len(all)-1].Seq
	inject()
	inject()
	newLast := lastOf()
	if newLast <= resumeAt {
		t.Fatalf("nothing logged after %d", resumeAt)
	}
	since := fmt.Sprint(resumeAt)
	seqCheck(t, "watch --no-follow --since LAST", s.loggedEvents("--since", since), resumeAt+1, newLast, 1)
	w2 := s.watch("--since", since)
	w2.wait(t, 10*time.Second, "the last event", func(e event) bool { return e.Seq == newLast })
	seqCheck(t, "watch --since LAST", w2.all(), resumeAt+1, newLast, 1)

	// The holder's claim is bound to its new connection: killing it ends
	// the claim.
	holder.signal(syscall.SIGKILL)
	pollUntil(t, 5*time.Second, "the killed holder's claim ends", func() bool { return s.holderOf("top") == "" })
	if logs := daemonLogs(d); strings.Contains(logs, "releasing") {
		t.Errorf("the daemon complained releasing claims:\n%s", logs)
	}
}
