package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dbState is the database file's bytes ("" when there is none).
func (s *sandbox) dbState() string {
	b, err := os.ReadFile(s.path("daxstack.db"))
	if err != nil {
		return ""
	}
	return string(b)
}

// TestUnknownVerbsAndOptions: a verb or an option that neither daxstack
// nor dmsetup knows fails with exit status 1 and says which; nothing is
// done.
func TestUnknownVerbsAndOptions(t *testing.T) {
	s := newQuickSandbox(t)
	s.run("create", "keep", "--table", "0 8 zero")
	before := s.dbState()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"creat", "x", "--table", "0 8 zero"}, `daxstack: unknown command "creat" (see 'daxstack help')` + "\n"},
		{[]string{"create", "x", "--table", "0 8 zero", "--bogus"}, "daxstack: unrecognized option '--bogus'\n"},
		{[]string{"ls", "-q"}, "daxstack: invalid option -- 'q'\n"},
		{[]string{"info", "--nou"}, "daxstack: option '--nou' is ambiguous; possibilities: --noudevrules --noudevsync\n"},
		{[]string{"info", "-u", "TEST-x"}, "daxstack: --uuid: naming a device by UUID is not supported; name it\n"},
		{[]string{"remove", "--manglename", "odd", "keep"}, "daxstack: Unknown name mangling mode.\n"},
	}
	for _, tc := range tests {
		r := s.tryRun(tc.args...)
		if r.code != 1 || r.err != tc.want || r.out != "" {
			t.Errorf("daxstack %s: exit %d, stdout %q, stderr %q; want 1 and %q", strings.Join(tc.args, " "), r.code, r.out, r.err, tc.want)
		}
	}
	if s.dbState() != before {
		t.Errorf("a refused command line changed the database")
	}
}

// TestDmsetupOptionsAccepted: every option of dmsetup is accepted by every
// verb; where daxstack has no use for it, it is ignored (the README lists
// them). These are dmsetup 1.02's long options (getopt_long), with a value
// where they take one.
func TestDmsetupOptionsAccepted(t *testing.T) {
	s := newQuickSandbox(t)
	ignored := [][]string{
		{"--addnodeoncreate"}, {"--addnodeonresume"}, {"--alias", "a"}, {"--alldevices"}, {"--allprograms"},
		{"--allregions"}, {"--area"}, {"--areas", "2"}, {"--areasize", "8"}, {"--bounds", "1,2"}, {"--checks"},
		{"--clear"}, {"--deferred"}, {"--filemap"}, {"--follow", "name"}, {"--foreground"},
		{"--gid", "6"}, {"--group"}, {"--groupid", "1"}, {"--histogram"}, {"--length", "8"},
		{"--manglename", "none"}, {"--manglename", "AUTO"}, {"--mangle", "hex"}, {"--mode", "0600"}, {"--nogroup"},
		{"--noflush"}, {"--nolockfs"}, {"--noopencount"}, {"--nosuffix"}, {"--notimesuffix"},
		{"--udevcookie", "0x0d4d0001"}, {"--nomonitor"}, {"--noudevrules"}, {"--noudevsync"}, {"--precise"},
		{"--programid", "p"}, {"--raw"}, {"--readahead", "256"}, {"--readahead", "auto"}, {"--region"},
		{"--regions", "1"}, {"--regionid", "1"}, {"--relative"}, {"--retry"}, {"--segments"}, {"--setuuid"},
		{"--showkeys"}, {"--start", "0"}, {"--uid", "0"}, {"--units", "s"}, {"--unbuffered"}, {"--userdata", "u"},
		{"--verbose", "1"}, {"--verifyudev"}, {"--yes"}, {"-y"}, {"-v"}, {"-vvv"}, {"-G", "6"}, {"-U", "0"}, {"-M", "0600"},
		{"--readahead=none"},
	}
	s.run("create", "d", "--table", "0 8 zero")
	// All of them at once on each verb: a refused one fails the command
	// and is named in its error.
	var all []string
	for _, o := range ignored {
		all = append(all, o...)
	}
	for _, verb := range [][]string{{"ls"}, {"info", "d"}, {"info", "-c", "d"}, {"table", "d"}, {"status", "d"},
		{"deps", "d"}, {"suspend", "d"}, {"resume", "d"}, {"targets"}, {"version"}} {
		args := append(append([]string{}, verb...), all...)
		if r := s.tryRun(args...); r.code != 0 {
			t.Errorf("daxstack %s ...: exit %d: %s", strings.Join(verb, " "), r.code, r.err)
		}
	}
	// Given to create, they change nothing about the device.
	s.run("create", "e", "--noudevsync", "--verifyudev", "-y", "--readahead", "256", "--manglename", "none", "--addnodeoncreate", "--table", "0 8 zero")
	if out := s.run("table", "e"); out != "0 8 zero \n" {
		t.Errorf("table e: %q", out)
	}
}

// TestTableInputBounded: a table read from standard input or a file stops
// at 64 MiB or a million lines; the command fails at once, changing
// nothing, instead of eating the machine's memory.
func TestTableInputBounded(t *testing.T) {
	s := newQuickSandbox(t)
	s.run("create", "keep", "--table", "0 8 zero")
	before := s.dbState()
	for _, tc := range []struct {
		name  string
		stdin io.Reader
		args  []string
		want  string
	}{
		{"zeros on stdin", zeroReader{}, []string{"create", "x"}, "daxstack: table on stdin: more than 64 MiB: table too large\n"},
		{"yes on stdin", &repeatReader{line: []byte("0 8 zero\n")}, []string{"create", "y"}, "daxstack: table on stdin: more than 1000000 lines: table too large\n"},
		{"load from stdin", &repeatReader{line: []byte("0 8 zero\n")}, []string{"load", "keep"}, "daxstack: table on stdin: more than 1000000 lines: table too large\n"},
		{"a table file that never ends", nil, []string{"create", "z", "/dev/zero"}, "daxstack: table file /dev/zero: more than 64 MiB: table too large\n"},
		{"concise on stdin", zeroReader{}, []string{"create", "--concise"}, "daxstack: concise specification on stdin: more than 64 MiB: table too large\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.cmd(tc.args...)
			c.Stdin = tc.stdin
			r := s.tryCmd(c)
			if r.code != 1 || r.err != tc.want+"Command failed.\n" {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.err, tc.want)
			}
		})
	}
	if s.dbState() != before {
		t.Errorf("a refused table changed the database")
	}
	if out := s.run("ls"); out != "keep\t(0:0)\n" {
		t.Errorf("ls: %q", out)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// repeatReader repeats a line forever, as yes(1) does.
type repeatReader struct {
	line []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.line[r.off:])
		n += k
		r.off = (r.off + k) % len(r.line)
	}
	return n, nil
}

// TestTableInputInterrupted: SIGINT or SIGTERM stops a command that waits
// for its table on standard input (a forgotten table), with exit status 1
// and nothing changed.
func TestTableInputInterrupted(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		args []string
		want string
	}{
		{syscall.SIGINT, []string{"create", "foo"}, "daxstack: table on stdin: interrupted while reading: context canceled\n"},
		{syscall.SIGTERM, []string{"create", "foo"}, "daxstack: table on stdin: interrupted while reading: context canceled\n"},
		{syscall.SIGINT, []string{"load", "keep"}, "daxstack: table on stdin: interrupted while reading: context canceled\n"},
		// write's data, too, comes from standard input.
		{syscall.SIGINT, []string{"write", "keep", "--sector", "0"}, "daxstack: write keep: standard input: context canceled\n"},
	} {
		sig := tc.sig
		t.Run(sig.String()+" "+tc.args[0], func(t *testing.T) {
			s := newQuickSandbox(t)
			s.run("create", "keep", "--table", "0 8 zero")
			before := s.dbState()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close()
			c := s.cmd(tc.args...)
			c.Stdin = pr
			var errb bytes.Buffer
			c.Stderr = &errb
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			pw.Write([]byte("0 8 zero\n")) // input begun, never finished
			// Signal once the command has read what was written: it is
			// then waiting for more, with its handlers in place (a
			// signal before the Go runtime has started kills it).
			deadline := time.Now().Add(20 * time.Second)
			for {
				n, err := unix.IoctlGetInt(int(pw.Fd()), unix.TIOCINQ) // FIONREAD
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%v did not read its standard input", tc.args)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			c.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				c.Process.Kill()
				<-done
				t.Fatalf("%v did not stop on %v", tc.args, sig)
			}
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("create ended with %v, want exit status 1", err)
			}
			if want := tc.want + "Command failed.\n"; errb.String() != want {
				t.Errorf("stderr %q, want %q", errb.String(), want)
			}
			if s.dbState() != before {
				t.Errorf("an interrupted %v changed the database", tc.args)
			}
		})
	}
}

// TestLiteralBackslashN: the README's multi-line table pasted inside
// single quotes holds "\n" as two characters: the error says so and shows
// a form that works; that form works.
func TestLiteralBackslashN(t *testing.T) {
	s := newQuickSandbox(t)
	leaf := s.file("s.img", 1<<20)
	r := s.tryRun("create", "top", "--table", `0 1000 linear `+leaf+` 24\n1000 16 error`)
	const hint = `daxstack: line 1 of the table holds a literal \n (a backslash and an n, not a newline): single quotes keep it as it is.`
	if r.code != 1 || !strings.HasPrefix(r.err, hint) || !strings.Contains(r.err, "$'0 8 zero\\n8 8 error' in bash") {
		t.Errorf("exit %d, stderr %q", r.code, r.err)
	}
	// What $'...' passes: real newlines.
	s.run("create", "top", "--table", "0 1000 linear "+leaf+" 24\n1000 16 error")
	if out := s.run("table", "top"); out != "0 1000 linear "+leaf+" 24\n1000 16 error \n" {
		t.Errorf("table: %q", out)
	}
	// A table that loads is never second-guessed, whatever its text.
	if r := s.tryRun("create", "other", "--table", "0 8 zero"); r.code != 0 || r.err != "" {
		t.Errorf("create: %d %q", r.code, r.err)
	}
}

// TestErrorsNameWhatIsWrong: the messages of #10.11.
func TestErrorsNameWhatIsWrong(t *testing.T) {
	s := newQuickSandbox(t)
	s.run("create", "keep", "--table", "0 8 zero")
	before := s.dbState()
	tests := []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"map", "nosuch", "0"}, "daxstack: nosuch: device does not exist\nCommand failed.\n"},
		{nil, []string{"create", "x", "--table", "x"}, "Invalid format on line 1 of table given with --table.\nCommand failed.\n"},
		{nil, []string{"--lock-timeout", "0", "ls"}, "--lock-timeout (or DAXSTACK_LOCK_TIMEOUT) must be a positive duration, not 0s.\nCommand failed.\n"},
		{nil, []string{"ls", "--lock-timeout", "-1s"}, "--lock-timeout (or DAXSTACK_LOCK_TIMEOUT) must be a positive duration, not -1s.\nCommand failed.\n"},
		{[]string{"DAXSTACK_LOCK_TIMEOUT=0s"}, []string{"ls"}, "--lock-timeout (or DAXSTACK_LOCK_TIMEOUT) must be a positive duration, not 0s.\nCommand failed.\n"},
		{nil, []string{"info", "--reportformat", "xml"}, "Unknown report format: xml (basic or json).\nCommand failed.\n"},
		{nil, []string{"create", "a\tb", "--table", "0 8 zero"}, "daxstack: \"a\\tb\": Name \"a\\tb\" invalid. It contains a control character.\n" +
			"device-mapper: create ioctl on \"a\\tb\"  failed: Invalid argument\nCommand failed.\n"},
		{nil, []string{"create", "a\nb", "--notable"}, "daxstack: \"a\\nb\": Name \"a\\nb\" invalid. It contains a control character.\n" +
			"device-mapper: create ioctl on \"a\\nb\"  failed: Invalid argument\nCommand failed.\n"},
		{nil, []string{"rename", "keep", "k\x01"}, "daxstack: keep: Name \"k\\x01\" invalid. It contains a control character.\n" +
			"device-mapper: rename ioctl on keep (0:0) failed: Invalid argument\nCommand failed.\n"},
		{nil, []string{"create", "--concise", "c\x7f,,,,0 8 zero"}, "daxstack: \"c\\x7f\": Name \"c\\x7f\" invalid. It contains a control character.\n" +
			"device-mapper: create ioctl on \"c\\x7f\"  failed: Invalid argument\nCommand failed.\n"},
		{nil, []string{"create", "big", "--table", "0 18014398509481977 zero"},
			"Line 1 ends at sector 18014398509481977, past the largest device size of 18014398509481976 sectors.\nCommand failed.\n"},
	}
	for _, tc := range tests {
		c := s.cmd(tc.args...)
		c.Env = append(append([]string{}, s.env...), tc.env...)
		r := s.tryCmd(c)
		if r.code != 1 || r.err != tc.want {
			t.Errorf("daxstack %q: exit %d, stderr\n%q\nwant\n%q", tc.args, r.code, r.err, tc.want)
		}
	}
	if s.dbState() != before {
		t.Errorf("a refused command changed the database")
	}
	for _, verb := range []string{"read", "write"} {
		out := s.run(verb, "--help")
		if !strings.Contains(out, "--sector SECTOR, -s SECTOR  first SECTOR (required)\n") {
			t.Errorf("%s --help: %s", verb, out)
		}
	}
	// The largest device the kernel allows, as lvm2's test library makes
	// its error and zero helpers: its last sector reads.
	s.run("create", "-u", "TEST-zero", "zero", "--table", "0 18014398509481976 zero")
	if out := s.run("read", "zero", "--sector", "18014398509481975"); out != string(make([]byte, 512)) {
		t.Errorf("the last sector of the largest device: %d bytes", len(out))
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}
