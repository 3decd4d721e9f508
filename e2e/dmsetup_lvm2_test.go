package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// asDmsetup makes a directory holding a link named dmsetup to the built
// binary, as the README tells machines without device-mapper, and returns
// the link.
func asDmsetup(t *testing.T, s *sandbox) string {
	t.Helper()
	dir := s.path("bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "dmsetup")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// dm runs the dmsetup link with stdin and returns how it went.
func (s *sandbox) dm(link, stdin string, args ...string) runResult {
	s.t.Helper()
	c := exec.Command(link, args...)
	c.Env, c.Dir = s.env, s.dir
	c.Stdin = strings.NewReader(stdin)
	return s.tryCmd(c)
}

// dmOK runs the dmsetup link and fails the test unless it succeeds.
func (s *sandbox) dmOK(link string, args ...string) string {
	s.t.Helper()
	r := s.dm(link, "", args...)
	if r.code != 0 {
		s.t.Fatalf("dmsetup %s: exit %d\n%s", strings.Join(args, " "), r.code, r.err)
	}
	return r.out
}

// TestDmsetupPersonality: invoked as dmsetup, daxstack has dmsetup's verbs
// and options only and prints only what dmsetup prints.
func TestDmsetupPersonality(t *testing.T) {
	s := newQuickSandbox(t)
	dm := asDmsetup(t, s)
	leaf := s.file("a.img", 1<<20)
	s.dmOK(dm, "create", "d", "--table", "0 8 linear "+leaf+" 0")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"map", "d", "0"}, "Unknown command\n"},
		{[]string{"serve"}, "Unknown command\n"},
		{[]string{"--db", "x", "ls"}, "dmsetup: unrecognized option '--db'\n"},
		{[]string{"info", "--reportformat", "json"}, "dmsetup: unrecognized option '--reportformat'\n"},
		{[]string{"info", "-c", "-o", "name,health"}, "Unrecognised field: health (known: name,major,minor,attr,open,segments,events,uuid,devno,tables_loaded,suspended,readonly,device_count,devs_used,devnos_used)\nCommand failed.\n"},
		{[]string{"wait", "d"}, "dmsetup wait is not supported by daxstack.\nCommand failed.\n"},
	} {
		r := s.dm(dm, "", tc.args...)
		if r.code != 1 || r.err != tc.want {
			t.Errorf("dmsetup %s: exit %d, stderr %q; want 1 and %q", strings.Join(tc.args, " "), r.code, r.err, tc.want)
		}
	}
	if r := s.dm(dm, ""); r.code != 1 || !strings.Contains(r.err, "USAGE:\n   dmsetup ") || r.out != "" {
		t.Errorf("dmsetup alone: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	if out := s.dmOK(dm, "--version"); !strings.HasPrefix(out, "Library version:   ") || !strings.Contains(out, "\nDriver version:    ") {
		t.Errorf("dmsetup --version: %q", out)
	}
	// A lost leaf: daxstack says so in ls, info and the tree; dmsetup's
	// output has no place for it.
	if err := os.Remove(leaf); err != nil {
		t.Fatal(err)
	}
	s.run("rescan")
	if out := s.run("ls"); !strings.Contains(out, "degraded") {
		t.Fatalf("daxstack ls does not show the lost leaf: %q", out)
	}
	if out := s.dmOK(dm, "ls"); out != "d\t(0:0)\n" {
		t.Errorf("dmsetup ls: %q", out)
	}
	if out := s.dmOK(dm, "info", "d"); strings.Contains(out, "DEGRADED") || strings.Contains(out, "Lost") {
		t.Errorf("dmsetup info: %q", out)
	}
	if out := s.dmOK(dm, "ls", "--tree"); strings.Contains(out, "[lost]") {
		t.Errorf("dmsetup ls --tree: %q", out)
	}
}

// TestDmsetupLvm2Shapes drives the built binary as lvm2's test library
// (test/lib/aux.sh) drives dmsetup, through a link named dmsetup.
func TestDmsetupLvm2Shapes(t *testing.T) {
	s := newQuickSandbox(t)
	s.env = append(s.env, "LANG=C", "LC_ALL=")
	dm := asDmsetup(t, s)
	pv := s.file("pv.img", 16<<20)

	// prepare_devs: the PV, then LVs of linear pieces in one concise
	// specification.
	s.dmOK(dm, "create", "--concise", "pv,TEST-pv,,,0 30000 linear "+pv+" 0")
	s.dmOK(dm, "create", "--concise", "LVMTEST-lv1,TEST-lv1,,,0 100 linear pv 0,100 100 linear pv 1000;LVMTEST-lv2,TEST-lv2,,,0 50 linear pv 200")
	if out := s.dmOK(dm, "table", "LVMTEST-lv1"); out != "0 100 linear pv 0\n100 100 linear pv 1000\n" {
		t.Errorf("lv1: %q", out)
	}
	if out := s.dmOK(dm, "info", "-c", "--noheadings", "-o", "name,uuid", "LVMTEST-lv2"); out != "LVMTEST-lv2:TEST-lv2\n" {
		t.Errorf("lv2: %q", out)
	}

	// The error helper: the largest device there is, its number read as
	// lvm2 reads it.
	s.dmOK(dm, "create", "-u", "TEST-err", "err", "--table", "0 18014398509481976 error")
	errdev := strings.TrimSpace(s.dmOK(dm, "info", "-c", "--noheadings", "-o", "major,minor", "err"))
	if errdev != "0:3" {
		t.Fatalf("err's number: %q", errdev)
	}

	// A fault table of linear, write-error delay and drop-writes flakey
	// pieces, from a file, on a device made without a table; resumed.
	fault := s.path("f.table")
	text := fmt.Sprintf("0 100 linear pv 3000\n100 100 delay pv 3100 0 %s 0 0\n200 100 flakey pv 3200 0 180 1 drop_writes\n", errdev)
	if err := os.WriteFile(fault, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s.dmOK(dm, "create", "-u", "TEST-f", "f", "--notable")
	s.dmOK(dm, "load", "f", fault)
	if out := s.dmOK(dm, "info", "-c", "--noheadings", "-o", "tables_loaded", "f"); out != "Inactive\n" {
		t.Errorf("tables after load: %q", out)
	}
	s.dmOK(dm, "resume", "f")
	if out, want := s.dmOK(dm, "table", "f"), "0 100 linear pv 3000\n100 100 delay pv 3100 0 err 0 0\n200 100 flakey pv 3200 0 180 1 drop_writes\n"; out != want {
		t.Errorf("table f:\n%s\nwant\n%s", out, want)
	}
	if out, want := s.dmOK(dm, "status", "--noflush", "f"), "0 100 linear \n100 100 delay 0 0 0\n200 100 flakey \n"; out != want {
		t.Errorf("status f: %q, want %q", out, want)
	}
	blk := make([]byte, 512)
	rand.Read(blk)
	write := func(sector string) runResult {
		c := s.cmd("write", "f", "--sector", sector)
		c.Stdin = bytes.NewReader(blk)
		return s.tryCmd(c)
	}
	read := func(sector string) string { return s.run("read", "f", "--sector", sector) }
	if r := write("50"); r.code != 0 || read("50") != string(blk) {
		t.Errorf("linear piece: write %d %s", r.code, r.err)
	}
	if r := write("150"); r.code != 1 || !strings.Contains(r.err, "err sector 50: Input/output error") {
		t.Errorf("delay piece with ERRDEV for writes: exit %d, %q", r.code, r.err)
	}
	if got := read("150"); got != string(make([]byte, 512)) {
		t.Errorf("delay piece reads from the PV")
	}
	if r := write("250"); r.code != 0 || read("250") == string(blk) {
		t.Errorf("flakey drop_writes: the write must succeed and be dropped (exit %d %s)", r.code, r.err)
	}

	// The probes.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"info", "--noheadings", "-c", "-o", "name,open", "--separator", ";", "--nameprefixes", "--unquoted",
			"--sort", "open,-minor", "-S", "name=~LVMTEST || uuid=~TEST-f", "--mangle", "none"},
			"DM_NAME=f;DM_OPEN=0\nDM_NAME=LVMTEST-lv2;DM_OPEN=0\nDM_NAME=LVMTEST-lv1;DM_OPEN=0\n"}, // open ascending, then minor descending
		{[]string{"info", "--noheadings", "-c", "-o", "name", "-S", "uuid=TEST-pv"}, "pv\n"},
		{[]string{"info", "--noheadings", "-c", "-o", "name,open", "--sort", "-open", "-S", "name=~'^(pv|err)$'"}, "pv:3\nerr:1\n"},
		{[]string{"info", "--noheadings", "-c", "-o", "name,open", "--sort", "open", "-S", "name=~'^(pv|err)$'"}, "err:1\npv:3\n"},
		{[]string{"info", "--noheadings", "-c", "-o", "name", "-S", "name!=pv && open>0", "-O", "-name"}, "err\n"},
		{[]string{"info", "-c", "-o", "suspended,name", "err"}, "Suspended Name            \nActive    err             \n"},
		{[]string{"info", "-c", "-o", "tables_loaded", "err"}, "Tables\nLive  \n"},
		{[]string{"table", "--inactive", "f"}, ""},
		{[]string{"info", "-c", "-S", "name=nosuch"}, ""},
		{[]string{"udevcreatecookie"}, ""},
		{[]string{"udevcomplete", "0x0"}, ""},
		{[]string{"udevreleasecookie"}, ""},
		{[]string{"udevcomplete_all"}, ""},
	} {
		if out := s.dmOK(dm, tc.args...); out != tc.want {
			t.Errorf("dmsetup %s:\n%q\nwant\n%q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
	if out := s.dmOK(dm, "targets"); !strings.Contains(out, "\ndelay            v1.3.0\n") && !strings.HasPrefix(out, "delay            v1.3.0\n") {
		t.Errorf("targets: %q", out)
	}
	if lines := strings.Split(strings.TrimSpace(s.dmOK(dm, "version")), "\n"); !strings.HasPrefix(lines[len(lines)-1], "Driver version:") {
		t.Errorf("version: %q", lines)
	}
	// message X 0 idle: the kernel's answer for a target without messages.
	if r := s.dm(dm, "", "message", "f", "0", "idle"); r.code != 1 ||
		!strings.HasSuffix(r.err, "device-mapper: message ioctl on f  failed: Invalid argument\nCommand failed.\n") {
		t.Errorf("message idle: exit %d, %q", r.code, r.err)
	}

	// disable_dev: remove -f of a device in use leaves it with an error
	// table; --error loads one; enable_dev: create || load, resume.
	table := s.path("pv.table")
	if err := os.WriteFile(table, []byte("0 30000 linear "+pv+" 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.dm(dm, "", "remove", "-f", "pv"); r.code != 1 || !strings.Contains(r.err, "failed: Device or resource busy") {
		t.Fatalf("remove -f of a busy pv: exit %d, %q", r.code, r.err)
	}
	if out := s.dmOK(dm, "table", "pv"); out != "0 30000 error \n" {
		t.Errorf("pv after remove -f: %q", out)
	}
	if r := s.tryRun("read", "LVMTEST-lv1", "--sector", "0"); r.code != 1 || !strings.Contains(r.err, "Input/output error") {
		t.Errorf("lv1 over a disabled pv reads: exit %d", r.code)
	}
	if r := s.dm(dm, "", "create", "-u", "TEST-pv", "pv", table); r.code != 1 {
		t.Fatalf("create of an existing pv: exit %d", r.code)
	}
	s.dmOK(dm, "load", "pv", table)
	s.dmOK(dm, "resume", "pv")
	if out := s.dmOK(dm, "table", "pv"); out != "0 30000 linear "+pv+" 0\n" {
		t.Errorf("pv after enable_dev: %q", out)
	}
	if r := s.dm(dm, "0 10000000 error\n", "load", "pv"); r.code != 0 {
		t.Fatalf("disable_dev --error: load: %s", r.err)
	}
	s.dmOK(dm, "resume", "pv")
	if out := s.dmOK(dm, "table", "pv"); out != "0 10000000 error \n" {
		t.Errorf("pv after disable_dev --error: %q", out)
	}
	// A device nothing uses goes away with remove -f.
	s.dmOK(dm, "remove", "-f", "LVMTEST-lv2")
	if r := s.dm(dm, "", "info", "LVMTEST-lv2"); r.code != 1 || r.err != "Device does not exist.\nCommand failed.\n" {
		t.Errorf("info of a removed lv: exit %d, %q", r.code, r.err)
	}
}
