package transcript

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSession(t *testing.T) {
	text := strings.Join([]string{
		"===ORACLE-BEGIN===",
		"kernel: 6.1.0-57-amd64",
		"$ dmsetup create badd1 --table 0 16384 dust /dev/ram0 0",
		"  | device-mapper: reload ioctl on badd1 (254:0) failed: Invalid argument$",
		"  | Command failed.$",
		"  rc=1",
		"  kmsg: device-mapper: table: 254:0: dust: Invalid argument count (-EINVAL)",
		"  kmsg: device-mapper: ioctl: error adding target to table",
		"$ dmsetup status fl",
		"  | 0 16384 flakey $",
		"  rc=0",
		"# dread /dev/mapper/dust1 60+1: ok 512 bytes S0000060",
		"# dwrite /dev/mapper/dust1 62+1: FAIL errno=5 (Input/output error)",
		"  kmsg: device-mapper: dust: block 62 removed from badblocklist by write",
		"$ dmsetup message dust1 0 addbadblock 62 2",
		"  rc=0",
		"===ORACLE-END===",
	}, "\n")
	s, err := ParseSession(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Steps) != 6 {
		t.Fatalf("%d steps: %+v", len(s.Steps), s.Steps)
	}
	if s.Steps[0].Text != "kernel: 6.1.0-57-amd64" || s.Steps[0].RC != -1 {
		t.Errorf("step 0 = %+v", s.Steps[0])
	}
	c := s.Steps[1]
	if name, table, ok := c.Create(); !ok || name != "badd1" || table != "0 16384 dust /dev/ram0 0" {
		t.Errorf("Create() = %q, %q, %v", name, table, ok)
	}
	if c.RC != 1 || len(c.Out) != 2 || c.Line != 3 {
		t.Errorf("create step %+v", c)
	}
	if r, ok := c.TableRefusal(); !ok || r != "dust: Invalid argument count (-EINVAL)" {
		t.Errorf("TableRefusal() = %q, %v", r, ok)
	}
	if v, d, ok := s.Steps[2].Verb(); !ok || v != "status" || d != "fl" || !reflect.DeepEqual(s.Steps[2].Out, []string{"0 16384 flakey "}) {
		t.Errorf("status step %+v", s.Steps[2])
	}
	if io, ok := s.Steps[3].IO(); !ok || io != (IO{Dev: "dust1", Sector: 60, Count: 1, OK: true, Tag: "S0000060"}) {
		t.Errorf("IO() = %+v, %v", io, ok)
	}
	w := s.Steps[4]
	if io, ok := w.IO(); !ok || io != (IO{Write: true, Dev: "dust1", Sector: 62, Count: 1}) {
		t.Errorf("IO() = %+v, %v", io, ok)
	}
	if got := w.TargetLog("dust"); !reflect.DeepEqual(got, []string{"block 62 removed from badblocklist by write"}) {
		t.Errorf("TargetLog = %q", got)
	}
	if dev, sector, words, ok := s.Steps[5].Message(); !ok || dev != "dust1" || sector != 0 || !reflect.DeepEqual(words, []string{"addbadblock", "62", "2"}) {
		t.Errorf("Message() = %q %d %q %v", dev, sector, words, ok)
	}
}

func TestParseSessionRefuses(t *testing.T) {
	for _, text := range []string{"", "  rc=0", "$ x\n  rc=zero", "$ x\n  something"} {
		if s, err := ParseSession(strings.NewReader(text)); err == nil {
			t.Errorf("%q parsed as %+v", text, s)
		}
	}
}

// TestReadTheSessions reads the repository's dust-flakey.out and
// delay.out: every command has an exit status, and the counts of the
// kinds of step the target tests rely on are what grep finds in the files
// (grep -c '^\$ dmsetup create .* --table ', '^\$ dmsetup message ' and
// '^# d\(read\|write\) /dev/mapper/'), less delay.out's two "open FAIL"
// lines, which are no I/O: the device did not exist.
func TestReadTheSessions(t *testing.T) {
	for _, tc := range []struct {
		file                  string
		creates, messages, io int
	}{
		{"dust-flakey.out", 64, 60, 40},
		{"delay.out", 6, 0, 3},
	} {
		s := Load(t, tc.file)
		var creates, messages, ios int
		for _, st := range s.Steps {
			if st.Command != "" && st.RC < 0 {
				t.Errorf("%s line %d: %q has no exit status", tc.file, st.Line, st.Command)
			}
			if _, _, ok := st.Create(); ok {
				creates++
			}
			if _, _, _, ok := st.Message(); ok {
				messages++
			}
			if _, ok := st.IO(); ok {
				ios++
			}
		}
		if creates != tc.creates || messages != tc.messages || ios != tc.io {
			t.Errorf("%s: %d creates, %d messages, %d dio lines; want %d, %d, %d", tc.file, creates, messages, ios, tc.creates, tc.messages, tc.io)
		}
	}
}

func TestPatternHex(t *testing.T) {
	p := Pattern(9, 2)
	if len(p) != 1024 || string(p[:16]) != "S0000009S0000009" || string(p[1016:]) != "S0000010" {
		t.Errorf("Pattern(9, 2) = %q...%q", p[:16], p[1016:])
	}
	// dust-flakey.out: "raw ram0 sector 10 ... bytes24..39: 53 30 30 30 30 30 31 30 53 30 30 30 30 30 31 30"
	if got := Hex(Pattern(10, 1)[24:40]); got != "53 30 30 30 30 30 31 30 53 30 30 30 30 30 31 30" {
		t.Errorf("Hex = %q", got)
	}
}
