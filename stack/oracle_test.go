package stack_test

// The kernel oracle: testdata/kernel-oracle holds what a real Linux 6.1
// kernel did with one stack (dm-stack.sh ran in a guest; dm-stack.out is
// what it printed; NOTES.md explains it). This test builds the same stack
// on in-memory leaves with the guest's device numbers and checks, line by
// line: the printed tables, where every written sector landed on every
// leaf, which reads and writes failed, the translation of the injected bad
// block, and the words of the refused tables.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

const oracleDir = "../testdata/kernel-oracle/"

// oracle is dm-stack.out, split by kind of line.
type oracle struct {
	tables  map[string][]string // device -> table lines
	io      map[string]string   // "write top 0+1000" -> "ok" / "FAIL" / "ok S0000999"
	maps    []string            // "map nv0 leaf 80..87 <- top 8..15", in order
	refused []string            // kernel messages after "table: 254:2: "
}

func loadOracle(t *testing.T) oracle {
	t.Helper()
	f, err := os.Open(oracleDir + "dm-stack.out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := oracle{tables: map[string][]string{}, io: map[string]string{}}
	ioLine := regexp.MustCompile(`^((?:read|write) \S+ \d+\+\d+): (ok|FAIL)(?: (S\d{7}))?`)
	refused := regexp.MustCompile(`device-mapper: table: 254:2: (.*)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "s0: "), strings.HasPrefix(line, "top: "):
			dev, rest, _ := strings.Cut(line, ": ")
			o.tables[dev] = append(o.tables[dev], rest)
		case strings.HasPrefix(line, "map "):
			o.maps = append(o.maps, line)
		case ioLine.MatchString(line):
			m := ioLine.FindStringSubmatch(line)
			o.io[m[1]] = strings.TrimSpace(m[2] + " " + m[3])
		case refused.MatchString(line):
			o.refused = append(o.refused, refused.FindStringSubmatch(line)[1])
		}
	}
	if len(o.maps) == 0 || len(o.refused) != 3 || len(o.tables) != 2 {
		t.Fatalf("oracle not parsed: %d maps, %d refusals, %d tables", len(o.maps), len(o.refused), len(o.tables))
	}
	return o
}

// oracleLeaves are the guest's devices: nv0 is /dev/pmem1 (259:1), nv1 is
// /dev/pmem0 (259:0), vp0 is /dev/pmem2 (259:2), each 128 MiB; ram0 and
// ram1 are brd disks of 1 MiB.
func oracleLeaves() (map[string]*stacktest.MemLeaf, stack.LeafOpener) {
	leaves := map[string]*stacktest.MemLeaf{
		"nv0":  stacktest.NewMemLeaf("259:1", "pmem1", 262144, false),
		"nv1":  stacktest.NewMemLeaf("259:0", "pmem0", 262144, false),
		"vp0":  stacktest.NewMemLeaf("259:2", "pmem2", 262144, false),
		"ram0": stacktest.NewMemLeaf("1:0", "ram0", 2048, false),
		"ram1": stacktest.NewMemLeaf("1:1", "ram1", 2048, false),
	}
	paths := map[string]*stacktest.MemLeaf{
		"/dev/leaf/nv0": leaves["nv0"], "/dev/leaf/nv1": leaves["nv1"], "/dev/leaf/vp0": leaves["vp0"],
		"/dev/ram0": leaves["ram0"], "/dev/ram1": leaves["ram1"],
	}
	open := func(ref string) (stack.Leaf, error) {
		if l, ok := paths[ref]; ok {
			return l, nil
		}
		for _, l := range leaves {
			if l.Ref() == ref {
				return l, nil
			}
		}
		return nil, syscall.ENOENT
	}
	return leaves, open
}

// pattern is lib.sh's: sector k holds "S%07d" of its top-level number,
// repeated 64 times.
func pattern(start, n uint64) []byte {
	var b bytes.Buffer
	for k := start; k < start+n; k++ {
		b.WriteString(strings.Repeat(fmt.Sprintf("S%07d", k), 64))
	}
	return b.Bytes()
}

// leafmap is lib.sh's leafmap: runs of leaf sectors holding consecutive
// top-level sector numbers.
func leafmap(name string, data []byte, nsect int) []string {
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

func TestKernelOracle(t *testing.T) {
	o := loadOracle(t)
	leaves, open := oracleLeaves()
	p := stack.NewPool(open)
	create := func(name, text string) error {
		d, err := p.Create(name, "")
		if err != nil {
			return err
		}
		if err := p.LoadText(d, text, stack.SourceStdin); err != nil {
			p.Remove(d)
			return err
		}
		return p.Resume(d)
	}
	if err := create("s0", "0 2048 striped 2 8 /dev/leaf/nv0 64 /dev/leaf/nv1 128\n"); err != nil {
		t.Fatal(err)
	}
	if err := create("top", "0 1000 linear /dev/mapper/s0 24\n1000 16 error\n1016 200 linear /dev/leaf/vp0 40\n1216 32 zero\n"); err != nil {
		t.Fatal(err)
	}
	s0, _ := p.Device("s0")
	top, _ := p.Device("top")

	t.Run("tables", func(t *testing.T) {
		// The kernel prints s0 as its device number 254:0; daxstack prints
		// mapped devices by name.
		for dev, want := range o.tables {
			d, _ := p.Device(dev)
			got := d.Active().Lines()
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "254:0", "s0")
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s table:\n got %q\nwant %q", dev, got, want)
			}
		}
		if top.Size() != 1248 {
			t.Errorf("top size %d, oracle 1248", top.Size())
		}
	})

	io := func(op string, start, n uint64) string {
		key := fmt.Sprintf("%s top %d+%d", op, start, n)
		var err error
		buf := make([]byte, n*512)
		if op == "write" {
			_, err = top.WriteAt(pattern(start, n), int64(start*512))
		} else {
			_, err = top.ReadAt(buf, int64(start*512))
		}
		got := "ok"
		if err != nil {
			var ioe *stack.IOError
			if !errors.As(err, &ioe) || !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: error %v is not an *IOError matching EIO", key, err)
			}
			got = "FAIL"
		} else if op == "read" {
			if tag := string(bytes.TrimRight(buf[:8], "\x00")); tag != "" {
				got += " " + tag
			}
		}
		return got
	}
	t.Run("io", func(t *testing.T) {
		steps := []struct {
			op       string
			start, n uint64
		}{
			{"write", 0, 1000}, {"write", 1016, 200}, {"write", 1000, 1}, {"write", 990, 20}, {"write", 1216, 4},
			{"read", 999, 1}, {"read", 1000, 1}, {"read", 1015, 1}, {"read", 1016, 1}, {"read", 1216, 1}, {"read", 995, 10},
		}
		for _, s := range steps {
			key := fmt.Sprintf("%s top %d+%d", s.op, s.start, s.n)
			want, ok := o.io[key]
			if !ok {
				t.Fatalf("oracle has no %q", key)
			}
			if got := io(s.op, s.start, s.n); got != want {
				t.Errorf("%s: got %q, oracle %q", key, got, want)
			}
		}
	})

	t.Run("placement", func(t *testing.T) {
		var got []string
		got = append(got, leafmap("nv0", leaves["nv0"].Data(), 1200)...)
		got = append(got, leafmap("nv1", leaves["nv1"].Data(), 1200)...)
		got = append(got, leafmap("vp0", leaves["vp0"].Data(), 300)...)
		want := o.maps[:len(got)]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("placement differs from the kernel:\n got %d lines\nwant %d lines\nfirst got %q\nfirst want %q", len(got), len(want), got[:3], want[:3])
		}
		// The same placement through the mapping alone, and back up through
		// the reverse map: every oracle line is one exact extent each way.
		line := regexp.MustCompile(`^map (\w+) leaf (\d+)\.\.(\d+) <- top (\d+)\.\.(\d+)$`)
		g := p.Graph()
		for _, l := range want {
			m := line.FindStringSubmatch(l)
			la, _ := strconv.ParseUint(m[2], 10, 64)
			lb, _ := strconv.ParseUint(m[3], 10, 64)
			ta, _ := strconv.ParseUint(m[4], 10, 64)
			tb, _ := strconv.ParseUint(m[5], 10, 64)
			leafDev, _ := p.Leaf(leaves[m[1]].ID())
			for s := ta; s <= tb; s++ {
				steps, err := p.Trace(top, s)
				if err != nil {
					t.Fatal(err)
				}
				last := steps[len(steps)-1]
				if last.Child != leafDev || last.CSector != la+(s-ta) {
					t.Fatalf("%s: top %d maps to %v:%d", l, s, last.Child, last.CSector)
				}
			}
			up := rmapchain.Propagate(g, map[*stack.Dev]extent.Set{leafDev: extent.Of(extent.Extent{Start: la, Len: lb - la + 1})}, nil)
			if w := extent.Of(extent.Extent{Start: ta, Len: tb - ta + 1}); !up[top.Dev()].Equal(w) {
				t.Fatalf("%s: rmap gives top %v", l, up[top.Dev()])
			}
		}
	})

	t.Run("badblock", func(t *testing.T) {
		// "300 4" on nv1 (pmem0): stripe 1 of s0, so s0 348, so top 324.
		bad := extent.Of(extent.Extent{Start: 300, Len: 4})
		leaves["nv1"].Poison(bad)
		nv1, _ := p.Leaf(leaves["nv1"].ID())
		evs := rmapchain.Translate(p.Graph(), rmapchain.MediaError, nv1, bad, timeZero)
		got := map[string]string{}
		for _, e := range evs {
			got[e.Device] = e.Ranges.String()
		}
		want := map[string]string{"259:0": "{300+4}", "s0": "{348+4}", "top": "{324+4}"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("translated events %v, want %v", got, want)
		}
		br := rmapchain.BadRanges(p.Graph(), top.Dev(), s0.Dev())
		if br[top.Dev()].String() != "{324+4 1000+16}" || br[s0.Dev()].String() != "{348+4}" {
			t.Errorf("bad ranges top %v s0 %v", br[top.Dev()], br[s0.Dev()])
		}
		// The guest read through the page cache (4 KiB pages), so its read
		// of top 323 failed too; a byte-addressable reader fails only where
		// a bad sector is touched (NOTES.md).
		for _, c := range []struct {
			s    uint64
			want string
		}{{323, "ok S0000323"}, {324, o.io["read top 324+1"]}, {327, o.io["read top 327+1"]}, {328, o.io["read top 328+1"]}} {
			if got := io("read", c.s, 1); got != c.want {
				t.Errorf("read top %d after badblock: got %q, want %q", c.s, got, c.want)
			}
		}
		if o.io["read top 323+1"] != "FAIL" {
			t.Errorf("oracle changed: read top 323 no longer fails in the guest")
		}
	})

	t.Run("refused", func(t *testing.T) {
		tables := []string{
			"0 2047 striped 2 8 /dev/leaf/nv0 0 /dev/leaf/nv1 0",
			"0 2048 striped 2 7 /dev/leaf/nv0 0 /dev/leaf/nv1 0",
			"0 100000000 linear /dev/leaf/nv0 0",
		}
		for i, text := range tables {
			name := fmt.Sprintf("bad%d", i+1)
			err := create(name, text)
			var te *stack.TableError
			if !errors.As(err, &te) || !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("%s: %v", name, err)
			}
			if want := name + ": " + o.refused[i]; te.Error() != want {
				t.Errorf("%s refused with\n %q\nkernel:\n %q", name, te.Error(), want)
			}
			if _, err := p.Device(name); err == nil {
				t.Errorf("%s exists after refusal", name)
			}
		}
	})

	t.Run("ramdisks", func(t *testing.T) {
		if err := create("r0", "0 1024 striped 2 16 /dev/ram0 0 /dev/ram1 0"); err != nil {
			t.Fatal(err)
		}
		r0, _ := p.Device("r0")
		if _, err := r0.WriteAt(pattern(0, 1024), 0); err != nil {
			t.Fatal(err)
		}
		got := append(leafmap("ram0", leaves["ram0"].Data(), 512), leafmap("ram1", leaves["ram1"].Data(), 512)...)
		want := o.maps[len(o.maps)-len(got):]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("ram placement:\n got %q\nwant %q", got[:2], want[:2])
		}
	})
}
