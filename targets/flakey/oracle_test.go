package flakey

import (
	"strings"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/dust"   // the transcript's dustS, under fls
	_ "github.com/daxstack/daxstack/targets/linear" // its lin0
)

// mainline holds the transcript's flakey creates whose outcome differs
// in mainline, which daxstack follows (NOTES-targets.md; drivers/md/
// dm-flakey.c, parse_features and flakey_ctr), keyed by the table text.
var mainline = map[string]transcript.Expect{
	"0 16384 flakey /dev/ram0 0 1 x": {Refused: true, Text: "flakey: Invalid down interval (-EINVAL)",
		Why: "6.1 reported a bad down interval as the up interval's"},
	"0 16384 flakey /dev/ram0 0 1 1 1 error_reads":  {Why: "error_reads is a feature"},
	"0 16384 flakey /dev/ram0 0 60 0 1 error_reads": {Why: "error_reads is a feature"},
	"0 16384 flakey /dev/ram0 0 1 1 4 corrupt_bio_byte 32 r 1": {Refused: true, Text: "flakey: Feature corrupt_bio_byte requires 4 parameters (-EINVAL)",
		Why: "the parameter count is checked before the parameters"},
	"0 16384 flakey /dev/ram0 0 1 1 6 drop_writes corrupt_bio_byte 32 w 1 0": {Refused: true,
		Text: "flakey: drop_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set (-EINVAL)",
		Why:  "the words name random_write_corrupt too"},
	"0 16384 flakey /dev/ram0 0 1 1 6 error_writes corrupt_bio_byte 32 w 1 0": {Refused: true,
		Text: "flakey: error_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set (-EINVAL)",
		Why:  "the words name random_write_corrupt too"},
	"0 16384 flakey /dev/ram0 0 1 1 7 drop_writes error_writes corrupt_bio_byte 32 r 1 0": {Refused: true,
		Text: "flakey: Feature error_writes conflicts with feature drop_writes (-EINVAL)",
		Why:  "up to 11 feature arguments, so the features are read"},
}

func mainlineCreate(st transcript.Step) (transcript.Expect, bool) {
	_, table, _ := st.Create()
	e, ok := mainline[table]
	return e, ok
}

// mainlineTable is a 6.1 `dmsetup table` line of flakey as mainline
// prints it: no trailing space, and no features read back as the two
// mainline sets, error_reads and error_writes.
func mainlineTable(line string) string {
	f := strings.Fields(line)
	if len(f) == 8 && f[2] == "flakey" && f[7] == "0" {
		f = append(f[:7], "2", "error_reads", "error_writes")
	}
	return strings.Join(f, " ")
}

// TestOracleCreates: every flakey table of dust-flakey.out is built or
// refused as the kernel did, or as mainline does where it differs (37
// creates: grep -c '^\$ dmsetup create .* flakey ').
func TestOracleCreates(t *testing.T) {
	used := map[string]bool{}
	over := func(st transcript.Step) (transcript.Expect, bool) {
		e, ok := mainlineCreate(st)
		if ok {
			_, table, _ := st.Create()
			used[table] = true
		}
		return e, ok
	}
	if n := transcript.ReplaySession(t, transcript.Load(t, "dust-flakey.out"), nil, "flakey", over, nil); n != 37 {
		t.Errorf("checked %d flakey creates, the transcript has 37", n)
	}
	for table := range mainline {
		if !used[table] {
			t.Errorf("mainline difference %q matches no create of the transcript", table)
		}
	}
}

// TestOracleSession replays dust-flakey.out's flakey devices over
// ramdisks with memory: the table and status lines (tables as mainline
// prints them), and the always-down and up-interval I/O section byte for
// byte: each read's outcome, its first sector's tag and bytes 24..39, each
// write's outcome, and what the ramdisk holds after it. Before each
// always-down case the guest rewrote ram0's first 64 sectors with the
// pattern (dust-flakey.sh, wr_raw), and so does the replay. The clock is
// the system's: the intervals of these tables (0/3600, 60/0, 3600/1) do
// not change within a test's run.
func TestOracleSession(t *testing.T) {
	rd := transcript.NewRamdisks(false)
	var reports, ios, bytesChecked int
	var lastRead []byte
	// onlyMainline holds the devices that exist because mainline builds
	// a table 6.1 refused, with the line mainline prints for it.
	onlyMainline := map[string]string{}
	over := func(st transcript.Step) (transcript.Expect, bool) {
		name, table, _ := st.Create()
		e, ok := mainlineCreate(st)
		delete(onlyMainline, name)
		if ok && st.RC != 0 && !e.Refused {
			onlyMainline[name] = strings.ReplaceAll(table, "/dev/ram0", "1:0")
		}
		return e, ok
	}
	transcript.ReplaySession(t, transcript.Load(t, "dust-flakey.out"), rd, "flakey", over, func(st transcript.Step, p *stack.Pool) {
		if strings.HasPrefix(st.Text, "--- down features=") {
			if _, err := rd.Ram0.WriteAt(transcript.Pattern(0, 64), 0); err != nil {
				t.Fatal(err)
			}
			return
		}
		if verb, name, ok := st.Verb(); ok && (verb == "status" || verb == "table") {
			d, tgt := flakeyOf(p, name)
			if tgt == nil {
				return
			}
			reports++
			got, want := d.Active().StatusLines(), st.Out
			if verb == "table" {
				got, want = d.Active().Lines(), []string{mainlineTable(st.Out[0])}
			}
			if line, ok := onlyMainline[name]; ok && st.RC != 0 {
				want = []string{line}
				if verb == "status" {
					want = []string{"0 16384 flakey "}
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("line %d: %s printed %q, want %q (the kernel's %q)", st.Line, st.Command, got, want, st.Out)
			}
			return
		}
		if io, ok := st.IO(); ok {
			dev, tgt := flakeyOf(p, io.Dev)
			if tgt == nil {
				return // dust's and delay's
			}
			ios++
			var b *stack.Bio
			if io.Write {
				b = write(io.Sector, transcript.Pattern(io.Sector, io.Count))
			} else {
				b = read(io.Sector, io.Count)
			}
			sent := append([]byte(nil), b.Data...)
			err := doIO(dev, b)
			if (err == nil) != io.OK {
				t.Errorf("line %d: %s: %v", st.Line, st.Note, err)
			}
			if io.Write && string(sent) != string(transcript.Pattern(io.Sector, io.Count)) {
				t.Errorf("line %d: the write changed the client's buffer", st.Line)
			}
			if !io.Write && err == nil && string(b.Data[:8]) != io.Tag {
				t.Errorf("line %d: read tag %q, the kernel's %q", st.Line, b.Data[:8], io.Tag)
			}
			return
		}
		if rest, ok := strings.CutPrefix(st.Note, "sector 5 bytes 24..39 via flakey:"); ok {
			// hexs: a dio read of sector 5 through flakey, then od of bytes 24..39.
			dev, _ := flakeyOf(p, "fl")
			b := read(5, 1)
			got := ""
			if doIO(dev, b) == nil {
				got = transcript.Hex(b.Data[24:40])
			}
			bytesChecked++
			if want := strings.TrimSpace(rest); got != want {
				t.Errorf("line %d: bytes 24..39 via flakey %q, the kernel's %q", st.Line, got, want)
			}
			return
		}
		if rest, ok := strings.CutPrefix(st.Note, "raw ram0 sector 10 after write: "); ok {
			lastRead = make([]byte, 512)
			if _, err := rd.Ram0.ReadAt(lastRead, 10*512); err != nil {
				t.Fatal(err)
			}
			bytesChecked++
			want := "dread /dev/ram0 10+1: ok 512 bytes " + string(lastRead[:8]) + " bytes24..39: " + transcript.Hex(lastRead[24:40])
			if rest != want {
				t.Errorf("line %d: ram0 sector 10 reads\n %q, the kernel's\n %q", st.Line, want, rest)
			}
		}
	})
	// grep -c '^\$ dmsetup \(status\|table\) fl' (21), '^# d\(read\|write\) /dev/mapper/fl' (12),
	// '^# \(sector 5\|raw ram0\)' (10).
	if reports != 21 || ios != 12 || bytesChecked != 10 {
		t.Errorf("replayed %d status and table lines, %d I/Os, %d byte checks; the transcript has 21, 12, 10", reports, ios, bytesChecked)
	}
}

func flakeyOf(p *stack.Pool, name string) (*stack.Device, stack.Target) {
	d, err := p.Device(name)
	if err != nil || d.Active() == nil {
		return nil, nil
	}
	segs := d.Active().Segments()
	if len(segs) != 1 || segs[0].Type != "flakey" {
		return nil, nil
	}
	return d, segs[0].Target
}
