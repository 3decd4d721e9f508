//go:build guest

package guest

// The kernel oracle's stack (testdata/kernel-oracle/dm-stack.sh, recorded
// by device-mapper in a Linux 6.1 guest) built by daxstack over real pmem:
// the same tables, the same writes and reads, and where every written
// sector landed, read back from the devices below daxstack. The oracle's
// nv0 and nv1 were label-less pmem of 128 MiB and vp0 a virtio-pmem disk;
// here nv0 and nv1 are fsdax namespaces (/dev/pmemN, 124 MiB once the pfn
// metadata is taken) and vp0 is a devdax namespace (/dev/daxX.Y), so the
// stack's last linear segment runs on device-dax.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

// oracleLeaves are the oracle's three leaves on this guest's namespaces.
type oracleLeaves struct {
	nv0, nv1, vp0 *namespace
}

func makeOracleLeaves(t *testing.T) oracleLeaves {
	return oracleLeaves{
		nv0: createNamespace(t, region0, "fsdax", "128M"),
		nv1: createNamespace(t, region1, "fsdax", "128M"),
		vp0: createNamespace(t, region2, "devdax", "64M"),
	}
}

// byName returns the leaf the oracle calls name.
func (l oracleLeaves) byName(name string) *namespace {
	return map[string]*namespace{"nv0": l.nv0, "nv1": l.nv1, "vp0": l.vp0}[name]
}

// printed turns what the oracle's guest printed for its devices into what
// daxstack prints for ours: the oracle's nv0 was 259:1 (pmem1), nv1 259:0,
// vp0 259:2, s0 254:0; a block device prints as major:minor, device-dax by
// its path, a mapped device by name; "too small" gives the leaf's size.
func (l oracleLeaves) printed(t *testing.T) *strings.Replacer {
	return strings.NewReplacer(
		"259:1", l.nv0.devno(t), "259:0", l.nv1.devno(t), "259:2", l.vp0.node(), "254:0", "s0",
		"pmem1", l.nv0.Blockdev, "dev_size=262144", "dev_size="+l.nv0.blockAttr(t, "size"))
}

// head reads the first sectors of a leaf below daxstack: a pmem block
// device with O_DIRECT (so the bytes come from the pmem, not from a cached
// page), device-dax through a mapping of its own.
func (l oracleLeaves) head(t testing.TB, name string, sectors int) []byte {
	t.Helper()
	n := l.byName(name)
	if n.Chardev != "" {
		return devdaxHead(t, n.node(), sectors)
	}
	fd, err := unix.Open(n.node(), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", n.node(), err)
	}
	defer unix.Close(fd)
	// O_DIRECT wants an aligned buffer: a page-aligned anonymous mapping.
	buf, err := unix.Mmap(-1, 0, sectors*512, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if got, err := unix.Pread(fd, buf, 0); err != nil || got != len(buf) {
		t.Fatalf("pread %s: %d bytes, %v", n.node(), got, err)
	}
	return bytes.Clone(buf)
}

// devdaxHead maps the start of a device-dax device (the whole first
// 2 MiB: its mappings must be aligned to the device's alignment) and
// copies the first sectors out.
func devdaxHead(t testing.TB, node string, sectors int) []byte {
	t.Helper()
	f, err := os.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, 2<<20, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %s: %v", node, err)
	}
	defer unix.Munmap(m)
	return bytes.Clone(m[:sectors*512])
}

// oracleIO is the oracle's writes and reads through top, in its order.
var oracleIO = []struct {
	op       string
	start, n uint64
}{
	{"write", 0, 1000}, {"write", 1016, 200}, {"write", 1000, 1}, {"write", 990, 20}, {"write", 1216, 4},
	{"read", 999, 1}, {"read", 1000, 1}, {"read", 1015, 1}, {"read", 1016, 1}, {"read", 1216, 1}, {"read", 995, 10},
}

// oracleMaps is the record's placement lines of the main stack's leaves.
func oracleMaps(rec *oracle.Record) []string {
	var out []string
	for _, l := range rec.Maps {
		if strings.HasPrefix(l, "map nv0 ") || strings.HasPrefix(l, "map nv1 ") || strings.HasPrefix(l, "map vp0 ") {
			out = append(out, l)
		}
	}
	return out
}

// placement is lib.sh's leafmap of the three leaves, read below daxstack.
func (l oracleLeaves) placement(t *testing.T) []string {
	var got []string
	for _, c := range []struct {
		leaf    string
		sectors int
	}{{"nv0", 1200}, {"nv1", 1200}, {"vp0", 300}} {
		got = append(got, oracle.LeafMap(c.leaf, l.head(t, c.leaf, c.sectors), c.sectors)...)
	}
	return got
}

func TestOracleStackOnPmem(t *testing.T) {
	rec, err := oracle.Read(oraclePath)
	if err != nil {
		t.Fatal(err)
	}
	l := makeOracleLeaves(t)
	printed := l.printed(t)
	s := newSandbox(t)
	s.create("s0", fmt.Sprintf("0 2048 striped 2 8 %s 64 %s 128\n", l.nv0.node(), l.nv1.node()))
	s.create("top", fmt.Sprintf("0 1000 linear /dev/mapper/s0 24\n1000 16 error\n1016 200 linear %s 40\n1216 32 zero\n", l.vp0.node()))

	t.Run("tables", func(t *testing.T) {
		for _, dev := range []string{"s0", "top"} {
			got := strings.TrimSuffix(s.run(nil, "table", dev), "\n")
			if want := printed.Replace(strings.Join(rec.Tables[dev], "\n")); got != want {
				t.Errorf("table %s:\n got %q\nwant %q", dev, got, want)
			}
		}
		if got := strings.TrimSpace(s.run(nil, "info", "-c", "-o", "size", "--noheadings", "top")); got != "1248" {
			t.Errorf("top size %q, oracle 1248", got)
		}
	})

	t.Run("io", func(t *testing.T) {
		for _, st := range oracleIO {
			key := fmt.Sprintf("%s top %d+%d", st.op, st.start, st.n)
			want, ok := rec.IO[key]
			if !ok {
				t.Fatalf("oracle has no %q", key)
			}
			if got := cliAccess(t, s, st.op, st.start, st.n); got != want {
				t.Errorf("%s: got %q, oracle %q", key, got, want)
			}
		}
	})

	t.Run("placement on the devices", func(t *testing.T) {
		got, want := l.placement(t), oracleMaps(rec)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("placement differs from the kernel's:\n got %d lines %q...\nwant %d lines %q...", len(got), first(got, 4), len(want), first(want, 4))
		}
	})

	t.Run("map", func(t *testing.T) {
		// daxstack's own account of where top's written sectors live
		// must be the placement the devices show.
		var pieces []string
		for _, r := range [][2]uint64{{0, 1000}, {1016, 200}} {
			pieces = append(pieces, mapPieces(t, s, l, "top", r[0], r[1])...)
		}
		if got, want := mergeMaps(pieces), oracleMaps(rec); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("daxstack map differs from the kernel's placement:\n got %d lines %q...\nwant %d lines %q...", len(got), first(got, 4), len(want), first(want, 4))
		}
	})

	t.Run("badblock", func(t *testing.T) {
		// The oracle's "300 4" on nv1: stripe 1 of s0, so s0 348, so top 324.
		l.nv1.injectBadblocks(t, 300, 4)
		if got := l.nv1.blockAttr(t, "badblocks"); got != "300 4" {
			t.Fatalf("kernel badblocks %q after writing 300 4", got)
		}
		for _, c := range []struct{ dev, want string }{
			{l.nv1.node(), "300 4"}, {"s0", "348 4"}, {"top", "324 4\n1000 16"},
		} {
			if got := s.badblocks(c.dev); got != c.want {
				t.Errorf("badblocks %s: %q, want %q", c.dev, got, c.want)
			}
		}
		// The guest read through the page cache, so its read of 323 (in
		// the page of 324) failed too; daxstack fails only where a bad
		// sector is touched.
		if rec.IO["read top 323+1"] != "FAIL" {
			t.Errorf("oracle changed: read top 323 no longer fails in the guest")
		}
		for _, c := range []struct {
			sec  uint64
			want string
		}{{323, "ok S0000323"}, {324, rec.IO["read top 324+1"]}, {327, rec.IO["read top 327+1"]}, {328, rec.IO["read top 328+1"]}} {
			if got := cliAccess(t, s, "read", c.sec, 1); got != c.want {
				t.Errorf("read top %d after the badblock: %q, want %q", c.sec, got, c.want)
			}
		}
		r := s.try(nil, "read", "top", "--sector", "320", "--count", "8")
		if r.err == nil || !strings.Contains(r.stderr, "top sector 324") || !strings.Contains(r.stderr, l.nv1.Blockdev) || !ioErr.MatchString(r.stderr) {
			t.Errorf("read top 320+8 must fail at top sector 324 naming %s:\n%v", l.nv1.Blockdev, r)
		}
		if want := Pattern(320, 4); !bytes.Equal([]byte(r.stdout), want) {
			t.Errorf("read top 320+8 wrote %d bytes before failing, want the 4 good sectors (%d bytes)", len(r.stdout), len(want))
		}
	})

	t.Run("refused", func(t *testing.T) {
		tables := []string{
			fmt.Sprintf("0 2047 striped 2 8 %s 0 %s 0\n", l.nv0.node(), l.nv1.node()),
			fmt.Sprintf("0 2048 striped 2 7 %s 0 %s 0\n", l.nv0.node(), l.nv1.node()),
			fmt.Sprintf("0 100000000 linear %s 0\n", l.nv0.node()),
		}
		for i, table := range tables {
			name := fmt.Sprintf("bad%d", i+1)
			before := testenv.StateOf(t, s.db())
			r := s.try([]byte(table), "create", name)
			want := "device-mapper: table: " + name + ": " + printed.Replace(rec.Refused[i])
			if line, _, _ := strings.Cut(r.stderr, "\n"); r.err == nil || line != want {
				t.Errorf("create %s:\n%v\nwant first line %q", name, r, want)
			}
			testenv.SameState(t, s.db(), before, "refused create "+name)
			if strings.Contains(s.run(nil, "ls"), name) {
				t.Errorf("%s exists after refusal", name)
			}
		}
	})
}

// Pattern is the oracle's sector pattern (lib.sh's pattern).
func Pattern(start, n uint64) []byte { return oracle.Pattern(start, n) }

// cliAccess does what lib.sh's wrtop or rdtop did, with the daxstack
// binary, and returns the outcome the way oracle.Record.IO holds it. A
// failure must exit 1 and say Input/output error.
func cliAccess(t *testing.T, s *sandbox, op string, start, n uint64) string {
	t.Helper()
	var r result
	if op == "write" {
		r = s.try(Pattern(start, n), "write", "top", "--sector", strconv.FormatUint(start, 10))
	} else {
		r = s.try(nil, "read", "top", "--sector", strconv.FormatUint(start, 10), "--count", strconv.FormatUint(n, 10))
	}
	if r.err != nil {
		if !ioErr.MatchString(r.stderr) {
			t.Errorf("%s top %d+%d failed without an I/O error:\n%v", op, start, n, r)
		}
		return "FAIL"
	}
	got := "ok"
	if op == "read" {
		if len(r.stdout) != int(n*512) {
			t.Errorf("read top %d+%d returned %d bytes", start, n, len(r.stdout))
		}
		if tag := strings.TrimRight(r.stdout[:min(8, len(r.stdout))], "\x00"); tag != "" {
			got += " " + tag
		}
	}
	return got
}

// mapPieces runs `daxstack map DEV START COUNT` and returns, for each
// piece that reaches a leaf, a placement line in leafmap's shape:
// "map LEAF leaf A..B <- top C..D", LEAF being the oracle's name.
func mapPieces(t *testing.T, s *sandbox, l oracleLeaves, dev string, start, count uint64) []string {
	t.Helper()
	names := map[string]string{}
	for _, n := range []string{"nv0", "nv1", "vp0"} {
		ns := l.byName(n)
		names[ns.node()], names[ns.devno(t)] = n, n
	}
	var out []string
	var top, n uint64
	for _, row := range s.report("map", "map", dev, strconv.FormatUint(start, 10), strconv.FormatUint(count, 10)) {
		var m struct {
			Level       int    `json:"level"`
			Sector      uint64 `json:"sector"`
			Count       uint64 `json:"count"`
			Child       string `json:"child"`
			ChildSector uint64 `json:"child_sector"`
			Leaf        bool   `json:"leaf"`
		}
		b, _ := json.Marshal(row)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Level == 0 {
			top, n = m.Sector, m.Count
		}
		if !m.Leaf {
			continue
		}
		if m.Count != n {
			t.Fatalf("map row %+v: a leaf piece of another length than its top piece (%d)", m, n)
		}
		name, ok := names[m.Child]
		if !ok {
			t.Fatalf("map names leaf %q, which is none of %v", m.Child, names)
		}
		out = append(out, fmt.Sprintf("map %s leaf %d..%d <- top %d..%d", name, m.ChildSector, m.ChildSector+n-1, top, top+n-1))
	}
	return out
}

// mergeMaps sorts placement lines by leaf and leaf sector and joins the
// lines that continue one another on both sides, as leafmap prints them.
func mergeMaps(lines []string) []string {
	type run struct {
		leaf             string
		ls, le, ts, tend int
	}
	var rs []run
	for _, l := range lines {
		var r run
		if _, err := fmt.Sscanf(l, "map %s leaf %d..%d <- top %d..%d", &r.leaf, &r.ls, &r.le, &r.ts, &r.tend); err != nil {
			panic(l)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b run) int {
		if c := strings.Compare(a.leaf, b.leaf); c != 0 {
			return c
		}
		return a.ls - b.ls
	})
	var out []string
	for i := 0; i < len(rs); {
		r := rs[i]
		for i++; i < len(rs) && rs[i].leaf == r.leaf && rs[i].ls == r.le+1 && rs[i].ts == r.tend+1; i++ {
			r.le, r.tend = rs[i].le, rs[i].tend
		}
		out = append(out, fmt.Sprintf("map %s leaf %d..%d <- top %d..%d", r.leaf, r.ls, r.le, r.ts, r.tend))
	}
	return out
}

// first is at most n of lines, for a failure message.
func first(lines []string, n int) []string { return lines[:min(n, len(lines))] }

// TestOracleLibraryOnPmem replays the oracle through the library
// (internal/oracle's Replay, as the dax tests do on files) with dax's
// Opener on the real devices: pmem block leaves whose poison is the
// kernel's badblocks list, and a device-dax leaf.
func TestOracleLibraryOnPmem(t *testing.T) {
	l := makeOracleLeaves(t)
	o := &dax.Opener{}
	p := stack.NewPool(func(ref string) (stack.Leaf, error) {
		l, err := o.Open(ref)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return l, nil
	})
	t.Cleanup(func() { p.Close() }) // unmap the leaves before their namespaces go
	r := oracle.Build(t, p, oracle.Guest{
		Refs:    map[string]string{"nv0": l.nv0.node(), "nv1": l.nv1.node(), "vp0": l.vp0.node()},
		Printed: l.printed(t),
		Head:    l.head,
	})
	t.Run("tables", r.Tables)
	t.Run("io", r.IO)
	t.Run("placement", func(t *testing.T) { r.Placement(t) })
	t.Run("badblock", func(t *testing.T) {
		l.nv1.injectBadblocks(t, 300, 4)
		// The kernel does not tell an open leaf that its list changed: a
		// leaf reads the list again in BadBlocks, which is what the
		// daemon's rescan calls. Until then the written pages are still
		// in the page cache and read back fine, bad or not.
		for _, d := range p.Leaves() {
			if bl, ok := d.Leaf().(interface{ BadBlocks() extent.Set }); ok {
				bl.BadBlocks()
			}
		}
		r.ReadsAfterBadblock(t)
	})
	t.Run("refused", r.Refused)
}
