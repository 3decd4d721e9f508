// Package oracle is the one reader of the kernel oracle's recorded results
// (testdata/kernel-oracle: what a Linux 6.1 guest did with one dm stack;
// its NOTES.md explains the output) for every package whose tests check
// against them.
//
// It exists so that stack (on in-memory leaves) and dax (on file leaves)
// parse dm-stack.out, write lib.sh's sector pattern, read back lib.sh's
// leaf placement map and replay the guest's steps the same way, from one
// copy: a fix to the reading of the oracle reaches every test that uses it.
//
// Record is the parsed output; Pattern and LeafMap are lib.sh's helpers;
// Replay builds the guest's stack in a pool and checks the parts of the
// record that do not depend on what the leaves are. A test adds the checks
// only it can make (reverse maps, poison errors, the leaf files
// themselves) around those.
package oracle

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Dir is the kernel oracle's directory as a test of a package one level
// below the module root sees it (go test runs a package's tests in the
// package's directory).
const Dir = "../testdata/kernel-oracle"

// Record is dm-stack.out, split by kind of line.
type Record struct {
	// Tables holds the `dmsetup table` lines of s0 and top, by device,
	// as the guest printed them (children as major:minor).
	Tables map[string][]string
	// IO holds each read or write the guest did, keyed like
	// "write top 0+1000", with its outcome: "ok", "FAIL", or for a read
	// that returned a pattern sector, "ok S0000999".
	IO map[string]string
	// Maps holds the placement lines, "map nv0 leaf 80..87 <- top 8..15",
	// in the order printed: the main stack's leaves, then the ramdisks'.
	Maps []string
	// Refused holds the kernel's messages for the refused tables, the
	// text after "device-mapper: table: 254:2: ", in order.
	Refused []string
}

var (
	ioLine      = regexp.MustCompile(`^((?:read|write) \S+ \d+\+\d+): (ok|FAIL)(?: (S\d{7}))?`)
	refusedLine = regexp.MustCompile(`device-mapper: table: 254:2: (.*)$`)
)

// Parse reads dm-stack.out. It fails unless it found what the oracle
// records: some placement lines, three refusals and the tables of two
// devices.
func Parse(r io.Reader) (*Record, error) {
	rec := &Record{Tables: map[string][]string{}, IO: map[string]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "s0: "), strings.HasPrefix(line, "top: "):
			dev, rest, _ := strings.Cut(line, ": ")
			rec.Tables[dev] = append(rec.Tables[dev], rest)
		case strings.HasPrefix(line, "map "):
			rec.Maps = append(rec.Maps, line)
		case ioLine.MatchString(line):
			m := ioLine.FindStringSubmatch(line)
			rec.IO[m[1]] = strings.TrimSpace(m[2] + " " + m[3])
		case refusedLine.MatchString(line):
			rec.Refused = append(rec.Refused, refusedLine.FindStringSubmatch(line)[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rec.Maps) == 0 || len(rec.Refused) != 3 || len(rec.Tables) != 2 {
		return nil, fmt.Errorf("oracle not parsed: %d maps, %d refusals, %d tables", len(rec.Maps), len(rec.Refused), len(rec.Tables))
	}
	return rec, nil
}

// Read parses the dm-stack.out at path.
func Read(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rec, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// Load is Read of Dir's dm-stack.out; any error fails t at once.
func Load(t testing.TB) *Record {
	t.Helper()
	rec, err := Read(filepath.Join(Dir, "dm-stack.out"))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// Pattern is lib.sh's pattern: n sectors from top-level sector start,
// sector k holding "S%07d" of k repeated 64 times.
func Pattern(start, n uint64) []byte {
	var b bytes.Buffer
	for k := start; k < start+n; k++ {
		b.WriteString(strings.Repeat(fmt.Sprintf("S%07d", k), 64))
	}
	return b.Bytes()
}

// LeafMap is lib.sh's leafmap: the runs of the first nsect sectors of
// data (a leaf named name) that hold consecutive top-level sectors of
// Pattern, as "map NAME leaf A..B <- top C..D" lines. A sector counts
// when it starts with a tag and ends with the same tag.
func LeafMap(name string, data []byte, nsect int) []string {
	var out []string
	started := false
	var ls, pl, ts, pt int
	flush := func() {
		if started {
			out = append(out, fmt.Sprintf("map %s leaf %d..%d <- top %d..%d", name, ls, pl, ts, pt))
		}
		started = false
	}
	for n := 0; n < nsect; n++ {
		s := data[n*512 : (n+1)*512]
		tag := -1
		if s[0] == 'S' && bytes.Equal(s[504:512], s[0:8]) {
			if v, err := strconv.Atoi(string(s[1:8])); err == nil {
				tag = v
			}
		}
		if tag >= 0 && started && n == pl+1 && tag == pt+1 {
			pl, pt = n, tag
			continue
		}
		flush()
		if tag >= 0 {
			started, ls, pl, ts, pt = true, n, n, tag, tag
		}
	}
	flush()
	return out
}
