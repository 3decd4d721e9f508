// Package transcript reads the kernel oracle's session transcripts,
// dust-flakey.out and delay.out (testdata/kernel-oracle, explained in its
// NOTES-targets.md): what a Linux 6.1 guest printed and logged for each
// dmsetup command and each O_DIRECT read and write it ran. It is the
// package oracle's sibling for the targets' tests: it imports no target,
// so a target's own (internal) tests can use it.
//
// A Session is the transcript as Steps; a Step knows the command shapes
// the target tests need (Create, Message, Verb, IO) and the kernel's log
// lines (TableRefusal, TargetLog). Ramdisks are the guest's devices as
// in-memory leaves, and ReplaySession runs a transcript's creates and
// removes in one pool, checking the creates of one target type against
// the kernel's outcome, and hands every other step to the caller.
package transcript

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Dir is the kernel oracle's directory, relative to the module root.
const Dir = "testdata/kernel-oracle"

// Path returns the path of the oracle file name, looking for the module
// root (the directory with go.mod) from the current directory upward: a
// test runs in its package's directory, at whatever depth.
func Path(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, Dir, name), nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the current directory")
		}
		dir = up
	}
}

// Load reads the oracle's session transcript name (dust-flakey.out,
// delay.out); any error fails t at once.
func Load(t testing.TB, name string) *Session {
	t.Helper()
	path, err := Path(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ReadSession(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Session is a transcript in the form of dust-flakey.out and delay.out
// (NOTES-targets.md): the commands the guest ran, in order, each with what
// it printed, its exit status and the kernel messages logged meanwhile,
// and between them the guest's own notes (the "# dread ..." I/O lines).
type Session struct {
	Steps []Step
}

// Step is one entry of a session: a command ("$ cmd"), a note ("# text")
// or any other line the script echoed, with the indented lines that
// followed it.
type Step struct {
	Line    int    // 1-based line number in the file
	Command string // the command after "$ ", as echoed (quoting lost); "" for other steps
	Note    string // the text after "# ", for notes
	Text    string // the line itself, for other steps
	// Out holds the lines the command printed (stdout and stderr), without
	// the "  | " prefix and the "$" end mark, so trailing blanks are kept.
	Out []string
	// RC is the exit status, or -1 when none was recorded (notes).
	RC int
	// Kmsg holds the kernel log lines that appeared meanwhile, without
	// "  kmsg: " and the timestamp.
	Kmsg []string
}

// ParseSession reads a session transcript. Lines between the
// ===ORACLE-BEGIN=== and ===ORACLE-END=== marks are read when the marks
// are there. It fails on an indented line it does not know, or one
// before any step.
func ParseSession(r io.Reader) (*Session, error) {
	s := &Session{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	no := 0
	for sc.Scan() {
		no++
		line := sc.Text()
		if line == "===ORACLE-BEGIN===" || line == "===ORACLE-END===" || strings.HasPrefix(line, "===ORACLE-RC=") {
			continue
		}
		if strings.HasPrefix(line, "  ") {
			if len(s.Steps) == 0 {
				return nil, fmt.Errorf("line %d: %q before any step", no, line)
			}
			st := &s.Steps[len(s.Steps)-1]
			body := line[2:]
			switch {
			case strings.HasPrefix(body, "| ") && strings.HasSuffix(body, "$"):
				st.Out = append(st.Out, body[2:len(body)-1])
			case strings.HasPrefix(body, "rc="):
				rc, err := strconv.Atoi(body[3:])
				if err != nil {
					return nil, fmt.Errorf("line %d: %q: %v", no, line, err)
				}
				st.RC = rc
			case strings.HasPrefix(body, "kmsg: "):
				st.Kmsg = append(st.Kmsg, body[len("kmsg: "):])
			default:
				return nil, fmt.Errorf("line %d: unknown indented line %q", no, line)
			}
			continue
		}
		st := Step{Line: no, RC: -1}
		switch {
		case strings.HasPrefix(line, "$ "):
			st.Command = strings.TrimPrefix(line, "$ ")
		case strings.HasPrefix(line, "# "):
			st.Note = strings.TrimPrefix(line, "# ")
		default:
			st.Text = line
		}
		s.Steps = append(s.Steps, st)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(s.Steps) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	return s, nil
}

// ReadSession parses the session transcript at path.
func ReadSession(path string) (*Session, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := ParseSession(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Args returns the command's words. The transcript echoes "$*", so the
// quoting is lost: a --table argument is the rest of the line (see Create).
func (st Step) Args() []string { return strings.Fields(st.Command) }

// Create returns the device name and table text of a `dmsetup create NAME
// --table TEXT` step; ok is false for any other step. The text keeps any
// trailing blanks the guest passed.
func (st Step) Create() (name, table string, ok bool) {
	rest, found := strings.CutPrefix(st.Command, "dmsetup create ")
	if !found {
		return "", "", false
	}
	name, table, found = strings.Cut(rest, " --table ")
	if !found || strings.ContainsAny(name, " \t") {
		return "", "", false
	}
	return name, table, true
}

// Message returns the device and the message words of a `dmsetup message
// NAME SECTOR WORDS...` step; ok is false for any other step.
func (st Step) Message() (dev string, sector uint64, words []string, ok bool) {
	a := st.Args()
	if len(a) < 4 || a[0] != "dmsetup" || a[1] != "message" {
		return "", 0, nil, false
	}
	n, err := strconv.ParseUint(a[3], 10, 64)
	if err != nil {
		return "", 0, nil, false
	}
	return a[2], n, a[4:], true
}

// Verb returns the dmsetup verb and its device of a `dmsetup VERB NAME`
// step (table, status, remove, ...); ok is false for other steps.
func (st Step) Verb() (verb, dev string, ok bool) {
	a := st.Args()
	if len(a) != 3 || a[0] != "dmsetup" {
		return "", "", false
	}
	return a[1], a[2], true
}

var (
	tableKmsg   = regexp.MustCompile(`^device-mapper: table: \d+:\d+: (.*)$`)
	targetKmsg  = regexp.MustCompile(`^device-mapper: ([a-z-]+): (.*)$`)
	ioNote      = regexp.MustCompile(`^d(read|write) /dev/mapper/(\S+) (\d+)\+(\d+): (ok|FAIL)`)
	ioNoteBytes = regexp.MustCompile(`: ok \d+ bytes (S\d{7})`)
)

// TableRefusal returns the text the kernel logged for a refused table,
// after "device-mapper: table: MAJ:MIN: " (for example "dust: Invalid
// argument count (-EINVAL)" or "ram0 too small for target: ..."); ok is
// false when the step logged none.
func (st Step) TableRefusal() (string, bool) {
	for _, k := range st.Kmsg {
		if m := tableKmsg.FindStringSubmatch(k); m != nil {
			return m[1], true
		}
	}
	return "", false
}

// TargetLog returns what target typ logged during the step, after
// "device-mapper: TYPE: ", in order (dust's message refusals, for one).
func (st Step) TargetLog(typ string) []string {
	var out []string
	for _, k := range st.Kmsg {
		if m := targetKmsg.FindStringSubmatch(k); m != nil && m[1] == typ {
			out = append(out, m[2])
		}
	}
	return out
}

// IO is one real O_DIRECT read or write of the guest (a "# dread" or
// "# dwrite" note, from dio.c).
type IO struct {
	Write  bool
	Dev    string // the mapped device's name
	Sector uint64 // first sector
	Count  uint64 // number of sectors
	OK     bool
	Tag    string // for a read that succeeded, the pattern tag of its first sector ("S0000060"), if any
}

// IO returns the I/O a note records; ok is false for other steps and for
// notes that are not a dio line.
func (st Step) IO() (IO, bool) {
	m := ioNote.FindStringSubmatch(st.Note)
	if m == nil {
		return IO{}, false
	}
	sector, err1 := strconv.ParseUint(m[3], 10, 64)
	count, err2 := strconv.ParseUint(m[4], 10, 64)
	if err1 != nil || err2 != nil {
		return IO{}, false
	}
	io := IO{Write: m[1] == "write", Dev: m[2], Sector: sector, Count: count, OK: m[5] == "ok"}
	if t := ioNoteBytes.FindStringSubmatch(st.Note); t != nil {
		io.Tag = t[1]
	}
	return io, true
}

// Pattern is what dio.c's "w" writes (and lib.sh's pattern): n sectors
// from sector start, sector k holding "S%07d" of k repeated 64 times.
func Pattern(start, n uint64) []byte {
	out := make([]byte, 0, n*512)
	for k := start; k < start+n; k++ {
		out = append(out, strings.Repeat(fmt.Sprintf("S%07d", k), 64)...)
	}
	return out
}

// Hex renders bytes as the transcripts' od lines do: two lowercase hex
// digits each, separated by spaces.
func Hex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	return sb.String()
}
