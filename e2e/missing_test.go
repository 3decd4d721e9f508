package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/internal/testenv"
)

// TestMissingLeaf builds devices on two file leaves, a and b, then takes b
// away. Without the daemon nothing records the loss, but every command
// sees it: ls, info and the reports show every device above b as degraded
// (and only those), its bad sectors are everything b backs, status still
// reports every table, and nothing is deleted: the tables, b's record and
// its poison stay, reports leave the file untouched, and a change to
// another device keeps them. Then a different file at b's path (another
// inode) is not b, so the devices stay degraded; b's own inode moved back
// to its path is b again, with its poison.
func TestMissingLeaf(t *testing.T) {
	s := newSandbox(t)
	a := s.file("a.img", 4096*512)
	b := s.file("b.img", 4096*512)
	s.run("create", "s0", "--table", fmt.Sprintf("0 2048 striped 2 8 %s 0 %s 0", a, b))
	s.run("create", "top", "--table", "0 1000 linear s0 24")
	s.run("create", "solo", "--table", fmt.Sprintf("0 100 linear %s 2000", a))
	s.run("create", "bonly", "--table", fmt.Sprintf("0 50 linear %s 100", b))
	s.run("inject", b, "--sector", "10", "--count", "2")
	tables := s.run("table")
	status := s.run("status")

	// Independently: s0 sector x is on b when (x/8)%2 == 1; top sector x
	// is s0 sector x+24.
	var topOnB uint64
	for x := range uint64(1000) {
		if ((x+24)/8)%2 == 1 {
			topOnB++
		}
	}
	degraded := map[string]bool{"s0": true, "top": true, "bonly": true, "solo": false}
	// b's poison 10..11 is stripe 1 sectors 10..11: the stripe's chunk 1,
	// so s0 chunk 3, s0 26..27, top 2..3; bonly starts at b 100.
	// dmsetup's minimum width of Name is 16.
	healthy := "Name             Health BadSect\nbonly            ok           0\ns0               bad          2\nsolo             ok           0\ntop              bad          2\n"
	if got := s.run("info", "-c", "-o", "name,health,bad_sectors"); got != healthy {
		t.Fatalf("before: info -c:\n%s\nwant:\n%s", got, healthy)
	}

	// Keep b's inode alive elsewhere, so that a new file cannot reuse it.
	hold := s.path("b.hold")
	if err := os.Link(b, hold); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	db := s.path("daxstack.db")
	before := testenv.StateOf(t, db)
	checkDegraded := func(when string) {
		t.Helper()
		want := fmt.Sprintf("bonly\t(0:3)\tdegraded: lost %[1]s\ns0\t(0:0)\tdegraded: lost %[1]s\nsolo\t(0:2)\ntop\t(0:1)\tdegraded: lost %[1]s\n", b)
		if got := s.run("ls"); got != want {
			t.Errorf("%s: ls:\n%s\nwant:\n%s", when, got, want)
		}
		rows, err := report[lsRow](s.run("ls", "--reportformat", "json"), "device")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Degraded != degraded[r.Name] {
				t.Errorf("%s: ls json: %s degraded %v", when, r.Name, r.Degraded)
			}
		}
		want = fmt.Sprintf("Name             Health   BadSect\nbonly            degraded      50\ns0               degraded    1024\nsolo             ok             0\ntop              degraded    %4d\n", topOnB)
		if got := s.run("info", "-c", "-o", "name,health,bad_sectors"); got != want {
			t.Errorf("%s: info -c:\n%s\nwant:\n%s", when, got, want)
		}
		for name, deg := range degraded {
			long := s.run("info", name)
			if got := strings.Contains(long, "State:             ACTIVE (DEGRADED)\n") &&
				strings.Contains(long, "Lost leaves:       "+b+"\n"); got != deg {
				t.Errorf("%s: info %s shows degraded %v, want %v:\n%s", when, name, got, deg, long)
			}
		}
		// status reports every segment of every device; whether a lost
		// stripe should read 'D' is left open (see the report).
		if got := s.run("status"); segmentsOf(got) != segmentsOf(status) {
			t.Errorf("%s: status:\n%s\nwant the segments of:\n%s", when, got, status)
		}
		if got := s.run("table"); got != tables {
			t.Errorf("%s: tables:\n%s\nwant:\n%s", when, got, tables)
		}
		if got := s.run("ls", "--tree", "-o", "ascii"); !strings.Contains(got, "("+b+") [lost]") {
			t.Errorf("%s: ls --tree does not mark b lost:\n%s", when, got)
		}
	}
	checkDegraded("b deleted")
	testenv.SameState(t, db, before, "reports while b is missing")

	// A change elsewhere keeps everything about b.
	s.run("create", "extra", "--table", fmt.Sprintf("0 8 linear %s 3000", a))
	s.run("remove", "extra")
	checkDegraded("after a change elsewhere")

	// Another file at b's path is not b.
	s.file("b.img", 4096*512)
	checkDegraded("another file at b's path")

	// b's inode back at its path is b.
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hold, b); err != nil {
		t.Fatal(err)
	}
	if got := s.run("ls"); got != "bonly\t(0:3)\ns0\t(0:0)\nsolo\t(0:2)\ntop\t(0:1)\n" {
		t.Errorf("b back: ls:\n%s", got)
	}
	if got := s.run("info", "-c", "-o", "name,health,bad_sectors"); got != healthy {
		t.Errorf("b back: info -c:\n%s\nwant:\n%s", got, healthy)
	}
	if got := s.run("badblocks", b); got != "10 2\n" {
		t.Errorf("b back: its poison: %q", got)
	}
	if got := s.run("badblocks", "top"); got != "2 2\n" {
		t.Errorf("b back: top's bad blocks: %q", got)
	}
	if got := s.run("table"); got != tables {
		t.Errorf("b back: tables:\n%s\nwant:\n%s", got, tables)
	}
}

// segmentsOf keeps "name: start length target" of each status line.
func segmentsOf(status string) string {
	var out []string
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		out = append(out, strings.Join(f[:min(len(f), 4)], " "))
	}
	return strings.Join(out, "\n")
}
