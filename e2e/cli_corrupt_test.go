package e2e

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
)

// corruptDBCommands are the commands run on every damaged database: the
// reports, and changes that must be refused without touching the file.
func corruptDBCommands(s *sandbox) [][]string {
	leaf := s.path("a.img")
	return [][]string{
		{"ls"}, {"ls", "--tree"}, {"ls", "--reportformat", "json"}, {"info"}, {"info", "-c"}, {"info", "top"},
		{"table"}, {"status"}, {"deps"}, {"map", "top", "0"}, {"rmap", leaf, "0", "8"}, {"badblocks", "top"},
		{"create", "x", "--table", "0 8 zero"}, {"load", "top", "--table", "0 8 zero"}, {"remove", "top"},
		{"inject", "top", "--sector", "1", "--count", "1"}, {"suspend", "top"}, {"rename", "top", "t2"},
	}
}

// realDatabase makes a database with the usual kinds of records: a stripe
// over two file leaves, a linear device on it, poison, a device without a
// table.
func realDatabase(t *testing.T, s *sandbox) []byte {
	t.Helper()
	a, b := s.file("a.img", 4<<20), s.file("b.img", 4<<20)
	s.run("create", "s0", "--table", fmt.Sprintf("0 2048 striped 2 8 %s 0 %s 0", a, b))
	s.run("create", "top", "--table", "0 1000 linear s0 24")
	s.run("create", "nt", "--notable")
	s.run("inject", "top", "--sector", "5", "--count", "2")
	db, err := os.ReadFile(s.path("daxstack.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// checkNoCrash runs commands on the database as it is and checks that
// each one answers: exit status 0 or 1, no panic, no signal, a message
// when it fails. It returns how many failed.
func checkNoCrash(t *testing.T, s *sandbox, what string) (failed int, stderr []string) {
	t.Helper()
	// One command of each kind of access: listing, one device's records,
	// a table, the graph, poison, a new record, a removal.
	for _, args := range [][]string{{"ls"}, {"info", "-c"}, {"table"}, {"map", "top", "0"},
		{"badblocks", "top"}, {"create", "x", "--table", "0 8 zero"}, {"remove", "top"}} {
		before := s.dbState()
		r := s.tryRun(args...)
		if r.code == 1 && s.dbState() != before {
			t.Errorf("%s: daxstack %s failed and changed the database", what, strings.Join(args, " "))
		}
		if r.code != 0 && r.code != 1 {
			t.Errorf("%s: daxstack %s: exit status %d\n%s", what, strings.Join(args, " "), r.code, r.err)
		}
		if strings.Contains(r.err, "panic") || strings.Contains(r.err, "goroutine ") || strings.Contains(r.err, "SIG") {
			t.Errorf("%s: daxstack %s crashed:\n%s", what, strings.Join(args, " "), r.err)
		}
		if r.code == 1 {
			failed++
			if strings.TrimSpace(r.err) == "" {
				t.Errorf("%s: daxstack %s failed without a word", what, strings.Join(args, " "))
			}
			stderr = append(stderr, r.err)
		}
	}
	return failed, stderr
}

// TestCorruptDatabaseTruncated: a database cut short (as by a full disk
// or a partial copy) is refused by every command with "corrupt database"
// and exit status 1, and stays as it is: never a signal (bbolt maps the
// file), never a new empty database in its place.
func TestCorruptDatabaseTruncated(t *testing.T) {
	s := newQuickSandbox(t)
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT=2s", "DAXSTACK_SOCKET="+s.path("none.sock"))
	good := realDatabase(t, s)
	for _, size := range []int{16, 4096, 8192, len(good) / 2} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			damaged := good[:size]
			if err := os.WriteFile(s.path("daxstack.db"), damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range corruptDBCommands(s) {
				r := s.tryRun(args...)
				if r.code != 1 || !strings.Contains(r.err, "corrupt database") {
					t.Errorf("daxstack %s on %d bytes: exit %d, stderr %q; want 1 and corrupt database",
						strings.Join(args, " "), size, r.code, r.err)
				}
			}
			if now, _ := os.ReadFile(s.path("daxstack.db")); !bytes.Equal(now, damaged) {
				t.Errorf("the damaged file was changed (%d bytes now, %d before)", len(now), len(damaged))
			}
		})
	}
}

// TestCorruptDatabaseFlips: 16 bytes flipped in each page of a real
// database in turn, then at random places. Whatever the flip hits (a meta
// page, a branch, a record, a free page), every command answers: its
// report, or exit status 1 with a message; never a panic or a signal. A
// command that fails changes nothing.
func TestCorruptDatabaseFlips(t *testing.T) {
	s := newQuickSandbox(t)
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT=2s", "DAXSTACK_SOCKET="+s.path("none.sock"))
	good := realDatabase(t, s)
	const page = 4096
	type flip struct {
		name string
		at   int
	}
	var flips []flip
	for p := 0; p*page < len(good); p++ {
		flips = append(flips, flip{fmt.Sprintf("page %d head", p), p*page + 16}, flip{fmt.Sprintf("page %d middle", p), p*page + page/2})
	}
	rng := rand.New(rand.NewSource(10))
	for i := 0; i < 8; i++ {
		flips = append(flips, flip{fmt.Sprintf("random %d", i), rng.Intn(len(good) - 16)})
	}
	corrupt := 0
	for _, f := range flips {
		damaged := bytes.Clone(good)
		for i := range 16 {
			damaged[f.at+i] ^= 0xa5
		}
		if err := os.WriteFile(s.path("daxstack.db"), damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		_, errs := checkNoCrash(t, s, f.name)
		for _, e := range errs {
			if strings.Contains(e, "corrupt database") {
				corrupt++
				break
			}
		}
	}
	// The meta pages are at the head of pages 0 and 1: flipping both
	// heads' bytes is always seen.
	if corrupt == 0 {
		t.Errorf("no flip was reported as a corrupt database")
	}
}

// TestDatabaseIsADirectory: a directory where the database should be is
// named as one, by every command.
func TestDatabaseIsADirectory(t *testing.T) {
	s := newQuickSandbox(t)
	s.file("a.img", 4<<20)
	if err := os.Mkdir(s.path("daxstack.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT=2s")
	for _, args := range corruptDBCommands(s) {
		r := s.tryRun(args...)
		if r.code != 1 || !strings.Contains(r.err, "is a directory") {
			t.Errorf("daxstack %s: exit %d, %q; want 1 and a directory named", strings.Join(args, " "), r.code, r.err)
		}
	}
}

// TestBrokenRecordListedEverywhere: a device whose stored table no longer
// loads (its record damaged: here its target type) is shown as broken by
// every report, and table and status fail for it rather than leave it
// out.
func TestBrokenRecordListedEverywhere(t *testing.T) {
	s := newQuickSandbox(t)
	good := realDatabase(t, s)
	damaged := bytes.ReplaceAll(good, []byte("linear s0"), []byte("liXear s0"))
	if bytes.Equal(damaged, good) {
		t.Fatal("top's table is not in the file")
	}
	if err := os.WriteFile(s.path("daxstack.db"), damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	const why = "top: stored table does not load: top: liXear: unknown target type"
	for _, args := range [][]string{{"table"}, {"table", "top"}, {"status"}, {"status", "top"}, {"table", "--reportformat", "json"}} {
		r := s.tryRun(args...)
		if r.code != 1 || !strings.Contains(r.err, why) {
			t.Errorf("daxstack %s: exit %d, stderr %q; want 1 and %q", strings.Join(args, " "), r.code, r.err, why)
		}
		if args[0] == "table" && len(args) == 1 && !strings.HasPrefix(r.out, "s0: 0 2048 striped") {
			t.Errorf("table: the other devices are not listed: %q", r.out)
		}
	}
	if r := s.tryRun("table", "nt"); r.code != 0 || r.out != "" {
		t.Errorf("table of a device without a table: exit %d, %q", r.code, r.out)
	}
	if out := s.run("ls"); !strings.Contains(out, "top\t(0:1)\tbroken: stored table does not load\n") {
		t.Errorf("ls: %q", out)
	}
	if out := s.run("ls", "--tree"); !strings.Contains(out, "top (0:1) [broken]\n") {
		t.Errorf("ls --tree: %q", out)
	}
	if out := s.run("ls", "--reportformat", "json"); !strings.Contains(out, `"broken": "top: liXear: unknown target type"`) {
		t.Errorf("ls json: %s", out)
	}
	if out := s.run("info", "-c", "--noheadings", "-o", "name,health", "top"); out != "top:broken\n" {
		t.Errorf("info health: %q", out)
	}
	if out := s.run("info", "top"); !strings.Contains(out, "State:             ACTIVE (DEGRADED)\n") ||
		!strings.Contains(out, "Stored table:      does not load: top: liXear: unknown target type\n") {
		t.Errorf("info: %s", out)
	}
}
