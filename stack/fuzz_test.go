package stack_test

// Fuzz targets for the table text paths. Plain `go test` runs each on its
// seed corpus (the kernel oracle's tables and the refusal cases); run one
// for longer with, e.g.:
//
//	go test ./stack -run '^$' -fuzz '^FuzzLoad$' -fuzztime 60s

import (
	"bufio"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// oracleTables returns the tables of the kernel oracle: those dm-stack.sh
// loaded (with its shell variables filled in) and those the kernel printed
// back (with s0's device number 254:0 replaced by its name).
func oracleTables(f *testing.F) []string {
	f.Helper()
	vars := strings.NewReplacer("$NV0", "/dev/leaf/nv0", "$NV1", "/dev/leaf/nv1", "$VP0", "/dev/leaf/vp0")
	piped := regexp.MustCompile(`echo "([^"]*)" \| dmsetup create`)
	var out []string
	script, err := os.ReadFile(oracleDir + "dm-stack.sh")
	if err != nil {
		f.Fatal(err)
	}
	lines := strings.Split(string(script), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := piped.FindStringSubmatch(l); m != nil {
			out = append(out, vars.Replace(m[1]))
		}
		if strings.Contains(l, "dmsetup create top <<T") {
			var body []string
			for i++; lines[i] != "T"; i++ {
				body = append(body, vars.Replace(lines[i]))
			}
			out = append(out, strings.Join(body, "\n"))
		}
	}
	printed := map[string][]string{}
	fh, err := os.Open(oracleDir + "dm-stack.out")
	if err != nil {
		f.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		for _, dev := range []string{"s0", "top"} {
			if rest, ok := strings.CutPrefix(sc.Text(), dev+": "); ok {
				printed[dev] = append(printed[dev], strings.ReplaceAll(rest, "254:0", "s0"))
			}
		}
	}
	for _, dev := range []string{"s0", "top"} {
		out = append(out, strings.Join(printed[dev], "\n"))
	}
	if len(out) < 8 {
		f.Fatalf("found only %d oracle tables: %q", len(out), out)
	}
	return out
}

// fuzzSeeds are oracle tables plus shapes from the refusal tests.
func fuzzSeeds(f *testing.F) []string {
	return append(oracleTables(f),
		"", "# only a comment", "0 0 zero", "0 10 nosuch", "1 10 zero", "0 10 zero\n11 10 zero",
		"0 10 linear", "0 10 linear 259:1 12x", "0 10 linear /dev/nope 0", "0 10 linear f 0",
		"0 16 striped 2 8 259:1 0 259:0 x", "0 15 striped 2 8 259:1 0", "0 2147483648 striped 2147483648 1",
		"0 36 striped 3 3 259:1 0 259:0 0 /dev/ram0 0", "0 10 error 259:1 5", "0 10 error a b c",
		"0 10 zero x", "0 8 linear e 0", "0 8 linear s0 2040\n8 4611686018427387896 error",
		`0 8 linear /dev/my\ leaf 0 # comment`, "0 64 striped 2 8 s0 0 /dev/ram1 100\n64 8 linear 0:0 3",
	)
}

// FuzzParseText: ParseText never panics; it returns lines or a
// *TableError matching ErrInvalid; a line it returns is well formed and,
// printed, parses back to itself (parameters lose trailing whitespace,
// which the printed line ends with only when a comment followed it).
func FuzzParseText(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		lines, err := stack.ParseText(text, stack.SourceStdin)
		if err != nil {
			var te *stack.TableError
			if !errors.As(err, &te) || !errors.Is(err, stack.ErrInvalid) || te.Line < 1 {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		prev := 0
		for _, l := range lines {
			if l.No <= prev || l.Type == "" || len(l.Type) >= 16 || l.Start > extent.MaxSector || l.Len > extent.MaxSector ||
				strings.ContainsAny(l.Type, " \t\n\v\f\r") || strings.ContainsAny(l.Params, "#\n") {
				t.Fatalf("malformed line %+v", l)
			}
			prev = l.No
			again, err := stack.ParseText(l.String(), stack.SourceStdin)
			if err != nil || len(again) != 1 {
				t.Fatalf("printed line %q does not parse back: %v %v", l.String(), again, err)
			}
			want := l
			want.No = 1
			want.Params = strings.TrimRight(l.Params, " \t\n\v\f\r")
			if again[0] != want {
				t.Fatalf("line %+v printed as %q parsed back as %+v", l, l.String(), again[0])
			}
		}
	})
}

// FuzzSplitArgs: EscapeArg is the inverse of SplitArgs. Every non-empty
// string escapes to one argument; the arguments of any parameter string,
// escaped and joined, split back into the same arguments.
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"", "a", "my leaf", `a\`, `\\ \ `, "2 8 /dev/pmem0 0", "\t\v\f\r\n", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s != "" {
			if got := stack.SplitArgs(stack.EscapeArg(s)); len(got) != 1 || got[0] != s {
				t.Fatalf("SplitArgs(EscapeArg(%q)) = %q", s, got)
			}
		}
		args := stack.SplitArgs(s)
		esc := make([]string, len(args))
		for i, a := range args {
			if a == "" {
				t.Fatalf("SplitArgs(%q) gave an empty argument", s)
			}
			esc[i] = stack.EscapeArg(a)
		}
		if got := stack.SplitArgs(strings.Join(esc, " ")); !slices.Equal(got, args) {
			t.Fatalf("arguments %q re-split as %q", args, got)
		}
	})
}

// FuzzParseConcise: ParseConcise never panics; a parsed list, written back
// with EscapeConcise, parses to the same devices.
func FuzzParseConcise(f *testing.F) {
	for _, s := range []string{
		"dev1,,,,0 100 linear 253:1 0,100 100 error;dev2,,,ro,0 1 error",
		`a\,b,u\;1,7,rw,0 1 linear /x\\y 0`, ";;", "a,,,", "a,,,rx,0 1 zero", `a\`, `\;\,\\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		devs, err := stack.ParseConcise(s)
		if err != nil {
			if !errors.Is(err, stack.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		specs := make([]string, len(devs))
		for i, d := range devs {
			flags := ""
			if d.ReadOnly {
				flags = "ro"
			}
			fields := []string{stack.EscapeConcise(d.Name), stack.EscapeConcise(d.UUID), stack.EscapeConcise(d.Minor), flags}
			for _, l := range d.Lines {
				fields = append(fields, stack.EscapeConcise(l))
			}
			specs[i] = strings.Join(fields, ",")
		}
		again, err := stack.ParseConcise(strings.Join(specs, ";"))
		if err != nil {
			t.Fatalf("rewritten %q: %v", strings.Join(specs, ";"), err)
		}
		if len(again) != len(devs) {
			t.Fatalf("%d devices became %d", len(devs), len(again))
		}
		for i := range devs {
			a, b := devs[i], again[i]
			if a.Name != b.Name || a.UUID != b.UUID || a.Minor != b.Minor || a.ReadOnly != b.ReadOnly || !slices.Equal(a.Lines, b.Lines) {
				t.Fatalf("device %d: %+v became %+v", i, a, b)
			}
		}
	})
}

// fuzzPool is the kernel oracle's world on sparse leaves: nv0, nv1, vp0
// (259:1, 259:0, 259:2, 128 MiB each) and ram0, ram1 (1:0, 1:1, 1 MiB),
// reachable by path too; s0, the oracle's striped device; e, a device with
// no table; and f, the device the fuzzed table is loaded into. nv1 carries
// the oracle's bad block, ram0 a strided run of poison, and ram1 is lost.
func fuzzPool(t *testing.T) (p *stack.Pool, f *stack.Device) {
	leaves := []*stacktest.MemLeaf{
		stacktest.NewMemLeaf("259:1", "pmem1", 262144, true),
		stacktest.NewMemLeaf("259:0", "pmem0", 262144, true),
		stacktest.NewMemLeaf("259:2", "pmem2", 262144, true),
		stacktest.NewMemLeaf("1:0", "ram0", 2048, true),
		stacktest.NewMemLeaf("1:1", "ram1", 2048, true),
		stacktest.NewMemLeaf("/dev/my leaf", "my leaf", 512, true),
	}
	leaves[1].Poison(extent.Of(extent.Extent{Start: 300, Len: 4}))
	leaves[3].Poison(extent.FromRuns(extent.Run{Start: 5, Len: 2, Stride: 24, Count: 40}))
	leaves[4].SetLost(true)
	paths := map[string]*stacktest.MemLeaf{
		"/dev/leaf/nv0": leaves[0], "/dev/leaf/nv1": leaves[1], "/dev/leaf/vp0": leaves[2],
		"/dev/ram0": leaves[3], "/dev/ram1": leaves[4],
	}
	for _, l := range leaves {
		paths[l.Ref()] = l
	}
	p = stack.NewPool(func(ref string) (stack.Leaf, error) {
		if l, ok := paths[ref]; ok {
			return l, nil
		}
		return nil, syscall.ENOENT
	})
	s0, err := p.Create("s0", "")
	if err == nil {
		err = p.LoadText(s0, "0 2048 striped 2 8 /dev/leaf/nv0 64 /dev/leaf/nv1 128", stack.SourceStdin)
	}
	if err == nil {
		err = p.Resume(s0)
	}
	if err == nil {
		_, err = p.Create("e", "")
	}
	if err == nil {
		f, err = p.Create("f", "")
	}
	if err != nil {
		t.Fatal(err)
	}
	return p, f
}

// fuzzBad decides by the forward map alone whether a read of sector s of d
// fails: an error target, a sector past a child's end, or a lost or
// poisoned leaf sector.
func fuzzBad(t *testing.T, p *stack.Pool, d *stack.Device, s uint64) bool {
	steps, err := p.Trace(d, s)
	if err != nil {
		t.Fatalf("Trace(%s, %d): %v", d.Name(), s, err)
	}
	last := steps[len(steps)-1]
	if last.Err != nil {
		return true
	}
	if last.Child == nil {
		return false // zero
	}
	l := last.Child.Leaf()
	if l == nil {
		t.Fatalf("Trace(%s, %d) ends on mapped device %s", d.Name(), s, last.Child.Name())
	}
	if last.CSector >= l.Size() {
		t.Fatalf("Trace(%s, %d) ends past the end of %s at %d", d.Name(), s, l.Name(), last.CSector)
	}
	ml := l.(*stacktest.MemLeaf)
	return ml.Lost() || ml.BadBlocks().Contains(last.CSector)
}

// FuzzLoad loads arbitrary table text into f. It never panics, and every
// refusal is a *TableError about f. A table it accepts prints as text that
// reloads to the same text and the same mapping; every sector of it maps
// (exhaustively up to 4096 sectors, then the edges of every segment and a
// sample), MapRange covers what it is asked, and its bad ranges are
// exactly the sectors whose forward map fails.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, dev := fuzzPool(t)
		err := p.LoadText(dev, text, stack.SourceStdin)
		if err != nil {
			var te *stack.TableError
			if !errors.As(err, &te) || te.Device != "f" || te.Error() == "" {
				t.Fatalf("refusal %T %v", err, err)
			}
			return
		}
		if err := p.Resume(dev); err != nil {
			t.Fatal(err)
		}
		tb := dev.Active()
		printed := tb.String()
		g, err := p.Create("g", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.LoadText(g, printed, stack.SourceStdin); err != nil {
			t.Fatalf("printed table\n%s\ndoes not reload: %v", printed, err)
		}
		if err := p.Resume(g); err != nil {
			t.Fatal(err)
		}
		if g.Active().String() != printed {
			t.Fatalf("printed\n%s\nreloads as\n%s", printed, g.Active())
		}

		// The sectors to check.
		size := tb.Size()
		var sectors []uint64
		if size <= 4096 {
			for s := uint64(0); s < size; s++ {
				sectors = append(sectors, s)
			}
		} else {
			for _, seg := range tb.Segments() {
				for _, s := range []uint64{seg.Begin, seg.Begin + 1, seg.Begin + seg.Len/2, seg.End() - 2, seg.End() - 1} {
					if s >= seg.Begin && s < seg.End() {
						sectors = append(sectors, s)
					}
				}
			}
			for i := uint64(0); i < 64; i++ {
				sectors = append(sectors, i*(size/64)+i)
			}
		}
		bad := rmapchain.BadRanges(p.Graph(), dev.Dev())[dev.Dev()]
		for _, s := range sectors {
			if s >= size {
				continue
			}
			sf, err1 := p.Trace(dev, s)
			sg, err2 := p.Trace(g, s)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			a, b := sf[len(sf)-1], sg[len(sg)-1]
			if (a.Err == nil) != (b.Err == nil) || a.Child != b.Child || a.CSector != b.CSector {
				t.Fatalf("sector %d maps to %v:%d, reloaded to %v:%d", s, a.Child, a.CSector, b.Child, b.CSector)
			}
			if want := fuzzBad(t, p, dev, s); bad.Contains(s) != want {
				t.Fatalf("table\n%s\nsector %d: bad ranges say %v, forward map %v (bad ranges %v)", printed, s, bad.Contains(s), want, bad)
			}
		}
		if bad.Bounds().End() > size {
			t.Fatalf("bad ranges %v reach past the device's %d sectors", bad, size)
		}
		n := min(size, 4096)
		pieces, err := p.MapRange(dev, 0, n)
		if err == nil {
			var at uint64
			for _, pc := range pieces {
				if pc.Start != at || pc.Len == 0 {
					t.Fatalf("MapRange pieces %+v do not tile 0..%d", pieces, n)
				}
				at += pc.Len
			}
			if at != n {
				t.Fatalf("MapRange covered %d of %d sectors", at, n)
			}
		}
	})
}
