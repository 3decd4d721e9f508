package dax_test

// The kernel oracle (testdata/kernel-oracle: what a Linux 6.1 guest did
// with one dm stack, see its NOTES.md) replayed on FILE leaves: the same
// tables over files of the guest's sizes, the same writes and reads
// through the stack, and the placement of every written sector checked on
// the leaf files themselves, read with os.ReadFile and not through the
// leaves or the stack.

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

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

const oracleFile = "../testdata/kernel-oracle/dm-stack.out"

type oracle struct {
	tables  map[string][]string // device -> table lines
	io      map[string]string   // "write top 0+1000" -> "ok" / "FAIL" / "ok S0000999"
	maps    []string            // "map nv0 leaf 80..87 <- top 8..15", in order
	refused []string            // kernel messages after "table: 254:2: "
}

func loadOracle(t *testing.T) oracle {
	t.Helper()
	f, err := os.Open(oracleFile)
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

func TestKernelOracleFileLeaves(t *testing.T) {
	o := loadOracle(t)
	// The guest's leaves: nv0 = pmem1 (259:1), nv1 = pmem0 (259:0),
	// vp0 = pmem2 (259:2), 128 MiB each; ram0, ram1: 1 MiB brd disks.
	ls := fileLeaves(t, &dax.Opener{}, map[string]int64{"nv0": 262144, "nv1": 262144, "vp0": 262144, "ram0": 2048, "ram1": 2048})
	p := stack.NewPool(ls.opener)
	build := func(name, text string) error {
		for n, r := range ls.ref {
			text = strings.ReplaceAll(text, "<"+n+">", r)
		}
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
	if err := build("s0", "0 2048 striped 2 8 <nv0> 64 <nv1> 128\n"); err != nil {
		t.Fatal(err)
	}
	if err := build("top", "0 1000 linear /dev/mapper/s0 24\n1000 16 error\n1016 200 linear <vp0> 40\n1216 32 zero\n"); err != nil {
		t.Fatal(err)
	}
	ls.adopt(t, p)
	top, _ := p.Device("top")
	guest := strings.NewReplacer("259:1", ls.ref["nv0"], "259:0", ls.ref["nv1"], "259:2", ls.ref["vp0"], "254:0", "s0", "pmem1", ls.ref["nv0"])

	t.Run("tables", func(t *testing.T) {
		for dev, want := range o.tables {
			d, _ := p.Device(dev)
			if got, w := strings.Join(d.Active().Lines(), "\n"), guest.Replace(strings.Join(want, "\n")); got != w {
				t.Errorf("%s table:\n got %q\nwant %q", dev, got, w)
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

	t.Run("placement on the leaf files", func(t *testing.T) {
		var got []string
		got = append(got, leafmap("nv0", ls.head(t, "nv0", 1200), 1200)...)
		got = append(got, leafmap("nv1", ls.head(t, "nv1", 1200), 1200)...)
		got = append(got, leafmap("vp0", ls.head(t, "vp0", 300), 300)...)
		if len(got) == 0 || len(got) > len(o.maps) {
			t.Fatalf("%d placement lines", len(got))
		}
		want := o.maps[:len(got)]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("placement differs from the kernel's:\n got %d lines\nwant %d lines\nfirst got %q\nfirst want %q", len(got), len(want), got[:3], want[:3])
		}
		// Nothing else was written: past what leafmap looked at, the
		// files are still zero.
		for _, c := range []struct {
			leaf string
			from int64
		}{{"nv0", 1200 * 512}, {"nv1", 1200 * 512}, {"vp0", 300 * 512}} {
			if at := ls.dataAfter(t, c.leaf, 0); at < 0 || at >= c.from {
				t.Fatalf("%s: first data at %d, want some before %d (dataAfter is broken)", c.leaf, at, c.from)
			}
			if at := ls.dataAfter(t, c.leaf, c.from); at >= 0 {
				t.Errorf("%s has data at byte %d, past sector %d", c.leaf, at, c.from/512)
			}
		}
	})

	t.Run("badblock", func(t *testing.T) {
		// "300 4" on nv1: stripe 1 of s0, so s0 348, so top 324.
		nv1 := ls.leaves["nv1"]
		if err := nv1.Inject(extent.Of(extent.Extent{Start: 300, Len: 4})); err != nil {
			t.Fatal(err)
		}
		// The guest read through the page cache, so its read of top 323
		// failed too (NOTES.md); a byte-addressable leaf fails only where
		// a bad sector is touched.
		for _, c := range []struct {
			s    uint64
			want string
		}{{323, "ok S0000323"}, {324, o.io["read top 324+1"]}, {327, o.io["read top 327+1"]}, {328, o.io["read top 328+1"]}} {
			if got := io("read", c.s, 1); got != c.want {
				t.Errorf("read top %d after badblock: got %q, want %q", c.s, got, c.want)
			}
		}
		_, err := top.ReadAt(make([]byte, 8*512), 320*512)
		var ioe *stack.IOError
		var pe *dax.PoisonError
		if !errors.As(err, &ioe) || !errors.As(err, &pe) || ioe.Sector != 324 || pe.Leaf != nv1.Name() || pe.Bad != (extent.Extent{Start: 300, Len: 4}) {
			t.Errorf("read top 320+8: %v; want top sector 324, %s sectors 300+4", err, nv1.Name())
		}
	})

	t.Run("refused", func(t *testing.T) {
		tables := []string{
			"0 2047 striped 2 8 <nv0> 0 <nv1> 0",
			"0 2048 striped 2 7 <nv0> 0 <nv1> 0",
			"0 100000000 linear <nv0> 0",
		}
		for i, text := range tables {
			name := fmt.Sprintf("bad%d", i+1)
			err := build(name, text)
			var te *stack.TableError
			if !errors.As(err, &te) || !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("%s: %v", name, err)
			}
			if want := name + ": " + guest.Replace(o.refused[i]); te.Error() != want {
				t.Errorf("%s refused with\n %q\nkernel:\n %q", name, te.Error(), want)
			}
		}
	})

	t.Run("ramdisks", func(t *testing.T) {
		if err := build("r0", "0 1024 striped 2 16 <ram0> 0 <ram1> 0"); err != nil {
			t.Fatal(err)
		}
		ls.adopt(t, p)
		r0, _ := p.Device("r0")
		if _, err := r0.WriteAt(pattern(0, 1024), 0); err != nil {
			t.Fatal(err)
		}
		got := append(leafmap("ram0", ls.head(t, "ram0", 512), 512), leafmap("ram1", ls.head(t, "ram1", 512), 512)...)
		want := o.maps[len(o.maps)-len(got):]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("ram placement:\n got %q\nwant %q", got[:2], want[:2])
		}
	})
}
