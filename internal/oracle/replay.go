package oracle

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// The guest's tables, as dm-stack.sh loaded them; "<nv0>" stands for the
// table reference of leaf nv0, and so on.
const (
	s0Table  = "0 2048 striped 2 8 <nv0> 64 <nv1> 128\n"
	topTable = "0 1000 linear /dev/mapper/s0 24\n1000 16 error\n1016 200 linear <vp0> 40\n1216 32 zero\n"
	r0Table  = "0 1024 striped 2 16 <ram0> 0 <ram1> 0"
)

// refusedTables are the tables the kernel refused, in the order of
// Record.Refused: a length not divisible by the number of stripes, one
// not divisible by the chunk, and a leaf too small.
var refusedTables = []string{
	"0 2047 striped 2 8 <nv0> 0 <nv1> 0",
	"0 2048 striped 2 7 <nv0> 0 <nv1> 0",
	"0 100000000 linear <nv0> 0",
}

// Guest is what a test puts in place of the guest's devices.
type Guest struct {
	// Refs is the table reference of each of the guest's leaves, by the
	// names dm-stack.sh gives them: nv0, nv1 and vp0 (128 MiB pmem;
	// /dev/pmem1, /dev/pmem0 and /dev/pmem2 in the guest) and ram0 and
	// ram1 (1 MiB ramdisks).
	Refs map[string]string
	// Printed turns what the guest printed for a device (a device number
	// such as 259:1 or 254:0, a kernel name such as pmem1) into what
	// daxstack prints for the test's device in its place.
	Printed *strings.Replacer
	// Head returns the first sectors of a leaf's bytes, read below the
	// stack: what lib.sh's leafmap reads with dd.
	Head func(t testing.TB, leaf string, sectors int) []byte
	// Opened, if not nil, is called each time the replay has created
	// devices, for the test to reach the leaves their tables opened.
	Opened func(t testing.TB, p *stack.Pool)
}

// Replay is the guest's stack rebuilt in a pool, with the record to check
// it against.
type Replay struct {
	Record  *Record
	Pool    *stack.Pool
	S0, Top *stack.Device
	guest   Guest
}

// Build loads the record and creates s0 and top in p with the guest's
// tables over the guest's leaves; any error fails t at once.
func Build(t testing.TB, p *stack.Pool, g Guest) *Replay {
	t.Helper()
	r := &Replay{Record: Load(t), Pool: p, guest: g}
	for _, d := range []struct{ name, table string }{{"s0", s0Table}, {"top", topTable}} {
		if err := r.create(d.name, d.table); err != nil {
			t.Fatal(err)
		}
	}
	r.opened(t)
	r.S0, _ = p.Device("s0")
	r.Top, _ = p.Device("top")
	return r
}

// create makes device name with table text, as `dmsetup create` does: a
// device whose table is refused is removed again.
func (r *Replay) create(name, text string) error {
	for leaf, ref := range r.guest.Refs {
		text = strings.ReplaceAll(text, "<"+leaf+">", ref)
	}
	d, err := r.Pool.Create(name, "")
	if err != nil {
		return err
	}
	if err := r.Pool.LoadText(d, text, stack.SourceStdin); err != nil {
		r.Pool.Remove(d)
		return err
	}
	return r.Pool.Resume(d)
}

func (r *Replay) opened(t testing.TB) {
	if r.guest.Opened != nil {
		r.guest.Opened(t, r.Pool)
	}
}

// Tables checks that s0 and top print the guest's tables, with the
// guest's device names turned by Guest.Printed, and that top has the
// guest's size.
func (r *Replay) Tables(t *testing.T) {
	for dev, want := range r.Record.Tables {
		d, err := r.Pool.Device(dev)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(d.Active().Lines(), "\n")
		if w := r.guest.Printed.Replace(strings.Join(want, "\n")); got != w {
			t.Errorf("%s table:\n got %q\nwant %q", dev, got, w)
		}
	}
	if r.Top.Size() != 1248 {
		t.Errorf("top size %d, oracle 1248", r.Top.Size())
	}
}

// Access does what lib.sh's wrtop or rdtop did: writes Pattern to n
// sectors of top from start, or reads them, and returns the outcome the
// way Record.IO holds it. A failure must be a *stack.IOError matching EIO.
func (r *Replay) Access(t testing.TB, op string, start, n uint64) string {
	t.Helper()
	var err error
	buf := make([]byte, n*512)
	if op == "write" {
		_, err = r.Top.WriteAt(Pattern(start, n), int64(start*512))
	} else {
		_, err = r.Top.ReadAt(buf, int64(start*512))
	}
	got := "ok"
	if err != nil {
		var ioe *stack.IOError
		if !errors.As(err, &ioe) || !errors.Is(err, syscall.EIO) {
			t.Errorf("%s top %d+%d: error %v is not an *IOError matching EIO", op, start, n, err)
		}
		got = "FAIL"
	} else if op == "read" {
		if tag := string(bytes.TrimRight(buf[:8], "\x00")); tag != "" {
			got += " " + tag
		}
	}
	return got
}

// IO does the guest's writes and reads through top, in its order, and
// checks each outcome against the record's.
func (r *Replay) IO(t *testing.T) {
	steps := []struct {
		op       string
		start, n uint64
	}{
		{"write", 0, 1000}, {"write", 1016, 200}, {"write", 1000, 1}, {"write", 990, 20}, {"write", 1216, 4},
		{"read", 999, 1}, {"read", 1000, 1}, {"read", 1015, 1}, {"read", 1016, 1}, {"read", 1216, 1}, {"read", 995, 10},
	}
	for _, s := range steps {
		key := fmt.Sprintf("%s top %d+%d", s.op, s.start, s.n)
		want, ok := r.Record.IO[key]
		if !ok {
			t.Fatalf("oracle has no %q", key)
		}
		if got := r.Access(t, s.op, s.start, s.n); got != want {
			t.Errorf("%s: got %q, oracle %q", key, got, want)
		}
	}
}

// Placement checks, after IO, where the written sectors landed: the
// leafmap of the first 1200 sectors of nv0 and nv1 and 300 of vp0 must be
// the record's first placement lines. It returns those lines.
func (r *Replay) Placement(t *testing.T) []string {
	var got []string
	for _, l := range []struct {
		leaf    string
		sectors int
	}{{"nv0", 1200}, {"nv1", 1200}, {"vp0", 300}} {
		got = append(got, LeafMap(l.leaf, r.guest.Head(t, l.leaf, l.sectors), l.sectors)...)
	}
	if len(got) == 0 || len(got) > len(r.Record.Maps) {
		t.Fatalf("%d placement lines, oracle has %d", len(got), len(r.Record.Maps))
	}
	want := r.Record.Maps[:len(got)]
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("placement differs from the kernel's:\n got %d lines\nwant %d lines\nfirst got %q\nfirst want %q", len(got), len(want), first(got, 3), first(want, 3))
	}
	return want
}

// ReadsAfterBadblock checks, once the test has made nv1's sectors 300+4
// bad (stripe 1 of s0, so s0 348, so top 324), single-sector reads of top
// around them. The guest read through the page cache (4 KiB pages), so
// its read of top 323 failed too (NOTES.md); a byte-addressable reader
// fails only where a bad sector is touched.
func (r *Replay) ReadsAfterBadblock(t *testing.T) {
	for _, c := range []struct {
		s    uint64
		want string
	}{{323, "ok S0000323"}, {324, r.Record.IO["read top 324+1"]}, {327, r.Record.IO["read top 327+1"]}, {328, r.Record.IO["read top 328+1"]}} {
		if got := r.Access(t, "read", c.s, 1); got != c.want {
			t.Errorf("read top %d after badblock: got %q, want %q", c.s, got, c.want)
		}
	}
	if r.Record.IO["read top 323+1"] != "FAIL" {
		t.Errorf("oracle changed: read top 323 no longer fails in the guest")
	}
}

// Refused creates devices bad1, bad2 and bad3 with the tables the kernel
// refused: each must be refused with a *stack.TableError matching EINVAL,
// in the kernel's words (turned by Guest.Printed), and leave no device.
func (r *Replay) Refused(t *testing.T) {
	for i, text := range refusedTables {
		name := fmt.Sprintf("bad%d", i+1)
		err := r.create(name, text)
		var te *stack.TableError
		if !errors.As(err, &te) || !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("%s: %v", name, err)
		}
		if want := name + ": " + r.guest.Printed.Replace(r.Record.Refused[i]); te.Error() != want {
			t.Errorf("%s refused with\n %q\nkernel:\n %q", name, te.Error(), want)
		}
		if _, err := r.Pool.Device(name); err == nil {
			t.Errorf("%s exists after refusal", name)
		}
	}
}

// Ramdisks creates r0, the guest's 2-stripe, 16-sector-chunk device over
// ram0 and ram1, writes Pattern over all of it, and checks that the
// leafmaps of the two ramdisks are the record's last placement lines.
func (r *Replay) Ramdisks(t *testing.T) {
	if err := r.create("r0", r0Table); err != nil {
		t.Fatal(err)
	}
	r.opened(t)
	r0, _ := r.Pool.Device("r0")
	if _, err := r0.WriteAt(Pattern(0, 1024), 0); err != nil {
		t.Fatal(err)
	}
	got := append(LeafMap("ram0", r.guest.Head(t, "ram0", 512), 512), LeafMap("ram1", r.guest.Head(t, "ram1", 512), 512)...)
	if len(got) == 0 || len(got) > len(r.Record.Maps) {
		t.Fatalf("%d ramdisk placement lines, oracle has %d", len(got), len(r.Record.Maps))
	}
	want := r.Record.Maps[len(r.Record.Maps)-len(got):]
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ram placement:\n got %q\nwant %q", first(got, 2), first(want, 2))
	}
}

// first is at most n of lines, for a failure message.
func first(lines []string, n int) []string { return lines[:min(n, len(lines))] }
