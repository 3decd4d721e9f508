package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testGid is the --group of the access tests: a gid no account uses, so
// that only the credentials the tests give a process put it in the group.
const testGid = 4242

// nobody is the unprivileged user the access tests run clients as.
const nobody = 65534

// openToOthers lets another uid reach the sandbox (and the binary): the
// temporary directories are 0700. The database stays 0600.
func openToOthers(t *testing.T, s *sandbox) {
	t.Helper()
	for _, d := range []string{s.dir, filepath.Dir(s.dir), filepath.Dir(bin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// runAs runs daxstack with other credentials.
func (s *sandbox) runAs(cred *syscall.Credential, args ...string) runResult {
	s.t.Helper()
	c := s.cmd(args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return s.tryCmd(c)
}

// TestDaemonAccess runs clients as uid 65534 against a daemon serving
// group 4242: in the group (primary or supplementary) they change state;
// outside it, with the socket opened up to them, reports work and every
// mutating command is refused with EACCES and changes nothing; with the
// socket as the daemon makes it, they cannot connect, fall back to the
// database, cannot open it either, and say so.
func TestDaemonAccess(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newQuickSandbox(t)
	openToOthers(t, s)
	leaf := s.file("leaf.img", 8<<20)
	s.run("create", "top", "--table", "0 16384 linear "+leaf+" 0")
	s.startDaemon("--group", fmt.Sprint(testGid), "--no-uevents", "--rescan", "1h")
	sock := s.path("daxstack.sock")

	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Mode&0o7777 != 0o660 || st.Uid != 0 || st.Gid != testGid {
		t.Fatalf("socket: mode %o uid %d gid %d, want a socket 0660 root:%d", st.Mode, st.Uid, st.Gid, testGid)
	}
	if err := syscall.Stat(s.path("daxstack.db"), &st); err != nil || st.Mode&0o777 != 0o600 {
		t.Fatalf("database mode %o (%v), want 0600", st.Mode&0o777, err)
	}

	s.sub("primary group", func(t *testing.T) {
		cred := &syscall.Credential{Uid: nobody, Gid: testGid}
		for _, args := range [][]string{
			{"create", "g1", "--table", "0 8 zero"},
			{"inject", "top", "--sector", "1", "--count", "1"},
		} {
			if r := s.runAs(cred, args...); r.code != 0 {
				t.Errorf("gid %d: daxstack %s: exit %d\n%s", testGid, strings.Join(args, " "), r.code, r.err)
			}
		}
		if out := s.run("badblocks", "top"); out != "1 1\n" {
			t.Errorf("badblocks top after the group's inject: %q", out)
		}
	})
	s.sub("supplementary group", func(t *testing.T) {
		cred := &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{testGid}}
		for _, args := range [][]string{
			{"create", "g2", "--table", "0 8 zero"},
			{"remove", "g2"},
			{"create", "g2", "--table", "0 16 zero"},
		} {
			if r := s.runAs(cred, args...); r.code != 0 {
				t.Errorf("groups [%d]: daxstack %s: exit %d\n%s", testGid, strings.Join(args, " "), r.code, r.err)
			}
		}
		if out := s.run("table", "g2"); out != "0 16 zero \n" && out != "0 16 zero\n" {
			t.Errorf("table g2 after the group's changes: %q", out)
		}
	})

	stranger := &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	s.sub("reader", func(t *testing.T) {
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(sock, 0o660)
		before := s.run("table")
		sum := s.dbChecksum()
		for args, want := range map[string]string{
			"ls":                  "top\t(0:0)",
			"table top":           "0 16384 linear " + leaf + " 0",
			"badblocks top":       "1 1",
			"info -c -o name g1":  "g1",
			"watch --no-follow":   `"kind":"media-error"`,
			"rmap " + leaf + " 1": "top",
		} {
			r := s.runAs(stranger, strings.Fields(args)...)
			if r.code != 0 || !strings.Contains(r.out, want) {
				t.Errorf("report %q by a stranger: exit %d, stdout %q (want %q), stderr %q", args, r.code, r.out, want, r.err)
			}
		}
		for _, args := range [][]string{
			{"create", "g3", "--table", "0 8 zero"},
			{"remove", "g1"},
			{"inject", "top", "--sector", "9", "--count", "1"},
			{"clear-errors", "top"},
			{"error-range", "top", "0", "8"},
			{"rename", "g1", "g9"},
			{"suspend", "top"},
			{"offline", leaf},
			{"rescan"},
			{"hold", "top"},
			{"release", "top"},
			{"message", "top", "0", "hello"},
		} {
			r := s.runAs(stranger, args...)
			if r.code != 1 || !strings.Contains(r.err, "permission denied") || !strings.Contains(r.err, fmt.Sprintf("uid %d", nobody)) ||
				!strings.Contains(r.err, fmt.Sprintf("group %d", testGid)) {
				t.Errorf("%s by a stranger: exit %d, stderr %q; want refused with EACCES, naming the uid and the group", strings.Join(args, " "), r.code, r.err)
			}
		}
		if s.dbChecksum() != sum {
			t.Error("refused commands changed the database")
		}
		if after := s.run("table"); after != before {
			t.Errorf("tables changed:\n%s\nwas\n%s", after, before)
		}
	})
	s.sub("no connection", func(t *testing.T) {
		sum := s.dbChecksum()
		for _, args := range [][]string{{"ls"}, {"create", "g4", "--table", "0 8 zero"}} {
			r := s.runAs(stranger, args...)
			if r.code != 1 || !strings.Contains(r.err, "permission denied") || !strings.Contains(r.err, "daxstack.db") {
				t.Errorf("%s by a stranger who cannot connect: exit %d, stderr %q; want permission denied on the database",
					strings.Join(args, " "), r.code, r.err)
			}
			t.Logf("%s: %s", strings.Join(args, " "), strings.TrimSpace(r.err))
		}
		if s.dbChecksum() != sum {
			t.Error("refused commands changed the database")
		}
	})
}

// TestDaemonMalformedRequests sends garbage on the socket: every line gets
// an error response, the connection keeps working, an oversized line ends
// only its own connection, and the daemon keeps serving and changes
// nothing.
func TestDaemonMalformedRequests(t *testing.T) {
	t.Parallel()
	s := newQuickSandbox(t)
	leaf := s.file("leaf.img", 1<<20)
	s.run("create", "top", "--table", "0 2048 linear "+leaf+" 0")
	d := s.startDaemon("--no-uevents", "--rescan", "1h")
	before := s.run("table")

	c, err := net.Dial("unix", s.path("daxstack.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rd := bufio.NewReader(c)
	type resp struct {
		ID     uint64          `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
			Errno   int    `json:"errno"`
		} `json:"error"`
	}
	roundTrip := func(line string) resp {
		t.Helper()
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatalf("write %q: %v", line, err)
		}
		l, err := rd.ReadBytes('\n')
		if err != nil {
			t.Fatalf("response to %q: %v", line, err)
		}
		var r resp
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("response to %q is not JSON: %q", line, l)
		}
		return r
	}
	for _, line := range []string{
		"garbage",
		"\x00\xff\xfe{",
		"[1,2,3]",
		`{"id":1,"method":"nosuch"}`,
		`{"id":2,"method":"create","params":"not an object"}`,
		`{"id":3,"method":"create","params":{"name":"x","table":"0 8 nosuchtarget"}}`,
		`{"id":4,"method":"inject","params":{"name":"top","sector":-1}}`,
		`{"id":5,"method":"claim","params":{}}`,
		`{"id":6,"method":"claim","params":[]}`,
		`{"id":7,"method":"subscribe","params":{"since":"x"}}`,
		`{"id":8,"method":"read","params":{"name":"top","offset":0,"length":-5}}`,
		`{"id":9,"method":"events","params":{"since":-1}}`,
		`{"ack":"x"}`,
	} {
		r := roundTrip(line)
		if r.Error == nil || r.Error.Message == "" {
			t.Errorf("%q: response %+v, want an error", line, r)
		}
	}
	if r := roundTrip(`{"id":10,"method":"version"}`); r.ID != 10 || r.Error != nil || !strings.Contains(string(r.Result), "library") {
		t.Errorf("version after garbage: %+v", r)
	}

	// A line longer than the protocol allows (16 MiB) ends its connection.
	big, err := net.Dial("unix", s.path("daxstack.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	big.SetDeadline(time.Now().Add(20 * time.Second))
	go big.Write([]byte(strings.Repeat("x", 17<<20) + "\n"))
	if _, err := bufio.NewReader(big).ReadBytes('\n'); err == nil {
		t.Error("the daemon answered a 17 MiB line instead of closing the connection")
	}

	select {
	case err := <-d.done:
		t.Fatalf("the daemon exited: %v\n%s", err, daemonLogs(d))
	default:
	}
	if r := roundTrip(`{"id":11,"method":"version"}`); r.Error != nil {
		t.Errorf("the first connection after the oversized line: %+v", r)
	}
	if after := s.run("table"); after != before {
		t.Errorf("garbage changed the tables:\n%s\nwas\n%s", after, before)
	}
	if out := s.run("badblocks", "top"); out != "" {
		t.Errorf("garbage poisoned top: %q", out)
	}
}
