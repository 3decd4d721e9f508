package e2e

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/internal/testenv"
)

// writeBolt writes a bbolt file directly, as another program (or another
// version of daxstack) would.
func writeBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaTooNew: a database whose meta/schema is 2 was written by a
// newer daxstack. Every command that reads or changes state refuses it
// with one clear line and exit status 1, and leaves the file as it was
// (bytes and mtime), daemon included.
func TestSchemaTooNew(t *testing.T) {
	s := newSandbox(t)
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT=2s")
	leaf := s.file("leaf.img", 1<<20)
	db := s.path("daxstack.db")
	writeBolt(t, db, func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		if err := meta.Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 2)); err != nil {
			return err
		}
		// What a version-2 file might hold: a device under a new layout.
		devs, err := tx.CreateBucket([]byte("devices2"))
		if err != nil {
			return err
		}
		return devs.Put([]byte("top"), []byte(`{"name":"top","tables":{"live":"0 8 linear `+leaf+` 0"}}`))
	})
	before := testenv.StateOf(t, db)
	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"ls", "", []string{"ls"}},
		{"ls json", "", []string{"ls", "--reportformat", "json"}},
		{"ls tree", "", []string{"ls", "--tree"}},
		{"info", "", []string{"info"}},
		{"info dev", "", []string{"info", "top"}},
		{"info columns", "", []string{"info", "-c"}},
		{"table", "", []string{"table"}},
		{"status", "", []string{"status", "top"}},
		{"deps", "", []string{"deps"}},
		{"map", "", []string{"map", "top", "0"}},
		{"rmap", "", []string{"rmap", leaf, "0", "8"}},
		{"badblocks", "", []string{"badblocks", "top"}},
		{"create", "", []string{"create", "x", "--table", "0 8 linear " + leaf + " 0"}},
		{"create stdin", "0 8 linear " + leaf + " 0\n", []string{"create", "x"}},
		{"create notable", "", []string{"create", "x", "--notable"}},
		{"create concise", "", []string{"create", "--concise", "x,,,,0 8 zero"}},
		{"load", "", []string{"load", "top", "--table", "0 8 zero"}},
		{"resume", "", []string{"resume", "top"}},
		{"suspend", "", []string{"suspend", "top"}},
		{"clear", "", []string{"clear", "top"}},
		{"wipe_table", "", []string{"wipe_table", "top"}},
		{"remove", "", []string{"remove", "top"}},
		{"remove force", "", []string{"remove", "-f", "top"}},
		{"remove_all", "", []string{"remove_all"}},
		{"rename", "", []string{"rename", "top", "top2"}},
		{"setuuid", "", []string{"rename", "top", "--setuuid", "U"}},
		{"message", "", []string{"message", "top", "0", "hello"}},
		{"inject", "", []string{"inject", "top", "--sector", "0", "--count", "1"}},
		{"clear-errors", "", []string{"clear-errors", "top"}},
		{"error-range", "", []string{"error-range", "top", "0", "1"}},
		{"good-range", "", []string{"good-range", "top", "0", "1"}},
		{"read", "", []string{"read", "top", "--sector", "0"}},
		{"write", "hello", []string{"write", "top", "--sector", "0"}},
		{"watch", "", []string{"watch", "--no-follow"}},
		{"watch follow", "", []string{"watch", "top"}},
		{"hold", "", []string{"hold", "top"}},
		{"release", "", []string{"release", "top"}},
		{"offline", "", []string{"offline", leaf}},
		{"rescan", "", []string{"rescan"}},
		{"serve", "", []string{"serve", "--no-uevents"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A command that waits (watch, hold, serve) must fail at once
			// rather than wait on a file it cannot read.
			r := s.runKillIn(20*time.Second, tc.stdin, tc.args...)
			if r.killed || r.code != 1 {
				t.Fatalf("exit %d (killed %v), want 1\nstdout: %s\nstderr: %s", r.code, r.killed, r.stdout, r.stderr)
			}
			want := "daxstack: store: " + db + ": database schema is newer than this daxstack understands: " +
				"the file has schema version 2, this daxstack knows versions up to 1; use a newer daxstack\nCommand failed.\n"
			if r.stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			testenv.SameState(t, db, before, "a daxstack that refuses the schema")
		})
	}
}

// TestEmptyDatabaseFile: a database file that is empty, or that bbolt
// initialised but daxstack never did (the first command was killed while
// creating it), holds no devices. Reports say so and leave it alone; the
// next change initialises it.
func TestEmptyDatabaseFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"empty", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt only", func(t *testing.T, path string) {
			writeBolt(t, path, func(*bolt.Tx) error { return nil })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			db := s.path("daxstack.db")
			tc.make(t, db)
			before := testenv.StateOf(t, db)
			for _, args := range [][]string{{"ls"}, {"info"}, {"table"}, {"status"}, {"table", "--inactive"}} {
				if out := s.run(args...); out != "No devices found\n" {
					t.Errorf("daxstack %s: %q", strings.Join(args, " "), out)
				}
			}
			if out := s.run("deps"); out != "" {
				t.Errorf("deps: %q", out)
			}
			if out := s.run("ls", "--reportformat", "json"); !bytes.Equal([]byte(out), []byte("{\n  \"report\": [\n    {\n      \"device\": []\n    }\n  ]\n}\n")) {
				t.Errorf("ls json: %q", out)
			}
			if r := s.runKill(-1, "info", "top"); r.code != 1 || r.stderr != "Device does not exist.\nCommand failed.\n" {
				t.Errorf("info top: exit %d, %q", r.code, r.stderr)
			}
			testenv.SameState(t, db, before, "a report")
			s.run("create", "x", "--notable")
			if out := s.run("ls"); out != "x\t(0:0)\n" {
				t.Fatalf("ls after create: %q", out)
			}
		})
	}
}
