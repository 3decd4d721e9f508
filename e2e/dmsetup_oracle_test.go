package e2e

import (
	"os"
	"strings"
	"testing"
)

// oracleOutput returns what the last run of cmd printed in a kernel oracle
// transcript ("$ cmd", then "  | line$" per line, then "  rc=N").
func oracleOutput(t *testing.T, file, cmd string) string {
	t.Helper()
	b, err := os.ReadFile("../testdata/kernel-oracle/" + file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	at := -1
	for i, l := range lines {
		if l == "$ "+cmd {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("%s: no %q", file, cmd)
	}
	var out strings.Builder
	for _, l := range lines[at+1:] {
		if !strings.HasPrefix(l, "  | ") {
			break
		}
		out.WriteString(strings.TrimSuffix(strings.TrimPrefix(l, "  | "), "$") + "\n")
	}
	return out.String()
}

// TestDmsetupOracleReports builds the last stack of dust-flakey.sh (lin0
// linear on the guest's pmem1, dustS dust on lin0, fls flakey on dustS)
// and checks every report shape against what the real dmsetup printed
// there. The only differences are the guest's names: its mapped devices
// are 254:N where daxstack's are 0:N, its leaf is 259:1 (pmem1) where
// here it is a file, and daxstack names mapped children in tables by name
// where the kernel prints numbers. The guest's locale was C, so its tree
// is ASCII. Flakey's table follows mainline (no trailing space, see
// NOTES-targets.md).
func TestDmsetupOracleReports(t *testing.T) {
	s := newQuickSandbox(t)
	s.env = append(s.env, "LANG=C", "LC_ALL=", "LC_CTYPE=")
	dm := asDmsetup(t, s)
	pmem1 := s.file("pmem1", 262144*512)
	s.dmOK(dm, "create", "lin0", "--table", "0 8192 linear "+pmem1+" 2048")
	s.dmOK(dm, "create", "dustS", "--table", "0 8192 dust lin0 0 512")
	s.dmOK(dm, "create", "fls", "--table", "0 4096 flakey dustS 16 60 0 1 drop_writes")

	ours := strings.NewReplacer(
		"(254:", "(0:", // ls, ls --tree
		"254, ", "0, ", // info: Major, minor
		"(259:1)", "("+pmem1+")", // the leaf
		"(pmem1)", "("+pmem1+")",
		"254:0 ", "lin0 ", "254:1 ", "dustS ", // children in tables and status
		"259:1 ", pmem1+" ",
		"drop_writes \n", "drop_writes\n", // mainline's flakey table
	)
	// info -c: the Maj column holds 254 in the guest.
	infoC := func(s string) string {
		return strings.ReplaceAll(ours.Replace(s), "            254 ", "              0 ")
	}
	for _, tc := range []struct {
		cmd  string
		conv func(string) string
	}{
		{"info -c", infoC},
		{"info -c -o name,major,minor,attr,open,segments,events,uuid", infoC},
		{"ls", ours.Replace},
		{"ls --tree", ours.Replace},
		{"ls --tree -o ascii", ours.Replace},
		{"deps -o devname", ours.Replace},
		{"table", ours.Replace},
		{"status", ours.Replace},
		{"info dustS", ours.Replace},
	} {
		want := tc.conv(oracleOutput(t, "dust-flakey.out", "dmsetup "+tc.cmd))
		got := strings.TrimRight(s.dmOK(dm, strings.Fields(tc.cmd)...), "\n") + "\n"
		if got != want {
			t.Errorf("dmsetup %s:\n%s\nthe guest's (converted):\n%s", tc.cmd, got, want)
		}
	}
	// deps prints children by number: the guest's mapped ones are 254.
	if got, want := s.dmOK(dm, "deps"), strings.NewReplacer("(254, ", "(0, ", "(259, 1)", "("+pmem1+")").Replace(oracleOutput(t, "dust-flakey.out", "dmsetup deps")); got != want {
		t.Errorf("dmsetup deps:\n%s\nwant\n%s", got, want)
	}
	// targets: the guest's targets daxstack has, with the same versions
	// (error and zero are mainline's newer ones).
	got := s.dmOK(dm, "targets")
	for _, l := range strings.Split(oracleOutput(t, "dust-flakey.out", "dmsetup targets"), "\n") {
		name, _, _ := strings.Cut(l, " ")
		switch name {
		case "dust", "delay", "flakey", "linear", "striped":
			if !strings.Contains(got, l+"\n") {
				t.Errorf("targets lacks %q:\n%s", l, got)
			}
		}
	}
	// In a UTF-8 locale the tree is drawn with box characters.
	s.env = append(s.env, "LANG=C.UTF-8")
	if out := s.dmOK(dm, "ls", "--tree"); !strings.Contains(out, " └─dustS (0:1)\n") {
		t.Errorf("ls --tree in C.UTF-8:\n%s", out)
	}
	if out := s.dmOK(dm, "ls", "--tree", "-o", "ascii"); !strings.Contains(out, " `-dustS (0:1)\n") {
		t.Errorf("ls --tree -o ascii in C.UTF-8:\n%s", out)
	}
}
