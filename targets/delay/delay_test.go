package delay

import (
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/linear"
)

func build(t testing.TB, table string) *delay {
	t.Helper()
	p := transcript.NewRamdisks(true).Pool()
	d := stacktest.MustCreate(t, p, "d", table)
	return d.Active().Segments()[0].Target.(*delay)
}

func delayOf(p *stack.Pool, name string) (*stack.Device, *delay) {
	d, err := p.Device(name)
	if err != nil || d.Active() == nil {
		return nil, nil
	}
	segs := d.Active().Segments()
	if len(segs) != 1 || segs[0].Type != "delay" {
		return nil, nil
	}
	return d, segs[0].Target.(*delay)
}

// TestOracle replays both transcripts: every delay table built or refused
// as the kernel did (7 creates in dust-flakey.out, 6 in delay.out: grep
// -c '^\$ dmsetup create .* delay '), every table and status line, and
// every read and write (held as the class says, then released, so that
// the status after it is the kernel's "0 0 0").
func TestOracle(t *testing.T) {
	for _, tc := range []struct {
		file                   string
		creates, reports, ioes int
	}{
		// grep -c '^\$ dmsetup \(status\|table\) dl' (the transcripts' delay
		// devices are all dl), and the dio lines on dl that opened it.
		{"dust-flakey.out", 7, 7, 1},
		{"delay.out", 6, 17, 6},
	} {
		var reports, ios int
		n := transcript.ReplaySession(t, transcript.Load(t, tc.file), nil, "delay", nil, func(st transcript.Step, p *stack.Pool) {
			if verb, name, ok := st.Verb(); ok && (verb == "status" || verb == "table") && name == "dl" {
				reports++
				d, _ := delayOf(p, name)
				if d == nil {
					if st.RC == 0 {
						t.Errorf("%s line %d: %s: no device, the kernel printed %q", tc.file, st.Line, st.Command, st.Out)
					}
					return
				}
				got := d.Active().StatusLines()
				if verb == "table" {
					got = d.Active().Lines()
				}
				if strings.Join(got, "\n") != strings.Join(st.Out, "\n") {
					t.Errorf("%s line %d: %s printed %q, the kernel %q", tc.file, st.Line, st.Command, got, st.Out)
				}
				return
			}
			// delay.out puts a read and a write on one line.
			for _, part := range strings.Split(st.Note, " ; ") {
				io, ok := transcript.Step{Note: part}.IO()
				if !ok {
					continue
				}
				_, tgt := delayOf(p, io.Dev)
				if tgt == nil {
					continue
				}
				ios++
				op := stack.OpRead
				if io.Write {
					op = stack.OpWrite
				}
				wait, release := tgt.Hold(&stack.Bio{Op: op, Pos: io.Sector * 512, Len: io.Count * 512})
				c := tgt.classOf(op)
				if wait != time.Duration(c.delay)*time.Millisecond || (c.delay > 0) != (release != nil) {
					t.Errorf("%s line %d: %v held for %v", tc.file, st.Line, op, wait)
				}
				if release != nil {
					release()
				}
			}
		})
		if n != tc.creates || reports != tc.reports || ios != tc.ioes {
			t.Errorf("%s: checked %d creates, %d status and table lines, %d I/Os; want %d, %d, %d", tc.file, n, reports, ios, tc.creates, tc.reports, tc.ioes)
		}
	}
}

// TestHold: each class waits for its own delay and counts while held;
// release counts it out once; a class with no delay is not held.
func TestHold(t *testing.T) {
	d := build(t, "0 8192 delay /dev/ram0 0 10 /dev/ram1 8 20 /dev/ram1 16 0")
	type held struct {
		op   stack.Op
		wait time.Duration
	}
	var releases []func()
	for _, h := range []held{
		{stack.OpRead, 10 * time.Millisecond}, {stack.OpWrite, 20 * time.Millisecond},
		{stack.OpWriteZeroes, 20 * time.Millisecond}, {stack.OpDiscard, 20 * time.Millisecond},
		{stack.OpRead, 10 * time.Millisecond},
	} {
		wait, release := d.Hold(&stack.Bio{Op: h.op, Len: 512})
		if wait != h.wait || release == nil {
			t.Errorf("%v: held %v, want %v", h.op, wait, h.wait)
		}
		releases = append(releases, release)
	}
	if wait, release := d.Hold(&stack.Bio{Op: stack.OpFlush}); wait != 0 || release != nil {
		t.Errorf("flush with delay 0: %v", wait)
	}
	if s := d.Status(); s != "2 3 0" {
		t.Errorf("status %q, want 2 3 0", s)
	}
	releases[0]()
	releases[0]() // a second release counts nothing
	releases[1]()
	if s := d.Status(); s != "1 2 0" {
		t.Errorf("status %q after two releases", s)
	}
	for _, r := range releases[2:] {
		r()
	}
	if s := d.Status(); s != "0 0 0" {
		t.Errorf("status %q after all", s)
	}
}

// TestSuspend: from PreSuspend until Resume nothing is held; a request
// held before PreSuspend still counts until its release.
func TestSuspend(t *testing.T) {
	d := build(t, "0 8192 delay /dev/ram0 0 10")
	_, release := d.Hold(&stack.Bio{Op: stack.OpWrite, Len: 512})
	d.PreSuspend()
	for _, op := range []stack.Op{stack.OpRead, stack.OpWrite, stack.OpFlush} {
		if wait, r := d.Hold(&stack.Bio{Op: op}); wait != 0 || r != nil {
			t.Errorf("%v held %v while suspending", op, wait)
		}
	}
	if s := d.Status(); s != "0 1 0" {
		t.Errorf("status %q", s)
	}
	release()
	d.PostSuspend()
	d.Resume()
	if wait, r := d.Hold(&stack.Bio{Op: stack.OpFlush}); wait != 10*time.Millisecond || r == nil {
		t.Errorf("flush after resume held %v", wait)
	} else {
		r()
	}
}

// TestPlacement: reads go to the read class, writes, write-zeroes and
// discards to the write class, flushes to the flush class; Map, Rmap and
// bad ranges follow the reads.
func TestPlacement(t *testing.T) {
	d := build(t, "0 1000 delay /dev/ram0 100 0 /dev/ram1 200 0 /dev/ram0 300 0")
	ram0, ram1 := d.read.dev, d.write.dev
	for _, tc := range []struct {
		op     stack.Op
		dev    *stack.Dev
		sector uint64
	}{
		{stack.OpRead, ram0, 105}, {stack.OpWrite, ram1, 205}, {stack.OpWriteZeroes, ram1, 205},
		{stack.OpDiscard, ram1, 205}, {stack.OpFlush, ram0, 305},
	} {
		m, err := d.MapOp(tc.op, 5)
		if err != nil || m.Dev != tc.dev || m.Sector != tc.sector || m.Run != 995 {
			t.Errorf("MapOp(%v, 5) = %+v, %v", tc.op, m, err)
		}
	}
	if m, _ := d.Map(5); m.Dev != ram0 || m.Sector != 105 {
		t.Errorf("Map(5) = %+v", m)
	}
	all := extent.Of(extent.Extent{Len: 2000})
	if got := d.Rmap(ram0, all); !got.Equal(extent.Of(extent.Extent{Len: 1000})) {
		t.Errorf("Rmap(ram0) = %v", got)
	}
	if got := d.Rmap(ram1, all); !got.Empty() {
		t.Errorf("Rmap(the write device) = %v", got)
	}
	if a := d.Areas(); len(a) != 3 || a[1].Dev != ram1 || a[1].Start != 200 || a[2].Start != 300 {
		t.Errorf("Areas = %+v", a)
	}
	three := build(t, "0 1000 delay /dev/ram0 100 5")
	if a := three.Areas(); len(a) != 1 {
		t.Errorf("Areas of a 3-argument table = %+v", a)
	}
	if m, _ := three.MapOp(stack.OpWrite, 1); m.Sector != 101 {
		t.Errorf("3-argument write goes to %d", m.Sector)
	}
}

func TestSplitAndTable(t *testing.T) {
	for _, tc := range []struct{ table, printed, piece string }{
		{"0 1000 delay /dev/ram0 100 7", "1:0 100 7", "1:0 110 7"},
		{"0 1000 delay /dev/ram0 100 7 /dev/ram1 0 9", "1:0 100 7 1:1 0 9", "1:0 110 7 1:1 10 9"},
		{"0 1000 delay /dev/ram0 100 7 /dev/ram1 0 9 /dev/ram1 50 3", "1:0 100 7 1:1 0 9 1:1 50 3", "1:0 110 7 1:1 10 9 1:1 60 3"},
		{"0 1000 delay /dev/ram0 0 99999999999", "1:0 0 1215752191", "1:0 10 1215752191"},
	} {
		d := build(t, tc.table)
		if got := d.Table(); got != tc.printed {
			t.Errorf("%s prints %q, want %q", tc.table, got, tc.printed)
		}
		if p, err := d.Split(10, 20); err != nil || p != tc.piece {
			t.Errorf("%s: Split(10, 20) = %q, %v", tc.table, p, err)
		}
	}
}

// TestConstructorOrder: each class is checked whole (offset, delay,
// device) before the next, and a lookup keeps its errno.
func TestConstructorOrder(t *testing.T) {
	for _, tc := range []struct{ params, text string }{
		{"/dev/nonexist 0 x", "Invalid delay (-EINVAL)"},
		{"/dev/nonexist x x", "Invalid device sector (-EINVAL)"},
		{"/dev/nonexist 0 10 /dev/ram1 x 20", "Device lookup failed (-ENODEV)"},
		{"/dev/ram0 0 10 /dev/nonexist 0 20", "Device lookup failed (-ENODEV)"},
		{"/dev/ram0 0 10 /dev/ram1 0 20 /dev/ram1 0 +3", "Invalid delay (-EINVAL)"},
		{"/dev/ram0 0 10 /dev/ram1 0 20 /dev/ram1 0 3 x", "Requires exactly 3, 6 or 9 arguments (-EINVAL)"},
	} {
		p := transcript.NewRamdisks(true).Pool()
		dev, _ := p.Create("d", "")
		_, err := p.Build(dev, []stack.Line{{No: 1, Len: 100, Type: "delay", Params: tc.params}})
		var te *stack.TableError
		if !errors.As(err, &te) || !strings.HasPrefix(te.Text, "d: delay: "+tc.text) {
			t.Errorf("%q: %v, want %q", tc.params, err, tc.text)
		}
		if strings.Contains(tc.text, "ENODEV") && !errors.Is(err, syscall.ENODEV) {
			t.Errorf("%q: %v does not match ENODEV", tc.params, err)
		}
	}
}

// TestConcurrent: holds, releases, status and suspends at once (-race).
func TestConcurrent(t *testing.T) {
	d := build(t, "0 100 delay /dev/ram0 0 1 /dev/ram1 0 2 /dev/ram1 0 3")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				op := []stack.Op{stack.OpRead, stack.OpWrite, stack.OpFlush}[(g+i)%3]
				if _, r := d.Hold(&stack.Bio{Op: op}); r != nil {
					d.Status()
					r()
				}
				if i%100 == 0 && g == 0 {
					d.PreSuspend()
					d.Resume()
				}
			}
		}()
	}
	wg.Wait()
	if s := d.Status(); s != "0 0 0" {
		t.Errorf("status %q after every release", s)
	}
}

// FuzzNew: any parameters build or are refused with a table error, never
// a panic; an accepted table prints back to one that builds the same
// target.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"/dev/ram0 0 50", "/dev/ram0 0 0 /dev/ram1 8 20", "/dev/ram0 0 0 /dev/ram1 8 20 /dev/ram1 16 30", "/dev/ram0 0 99999999999", "/dev/ram0 x 1", "/dev/ram0 0 10 /dev/ram1 0", `/dev/ram0 0 \ 5`} {
		f.Add(uint16(1000), s)
	}
	p := transcript.NewRamdisks(true).Pool()
	dev, err := p.Create("top", "")
	if err != nil {
		f.Fatal(err)
	}
	type classConfig struct {
		dev          string
		start        uint64
		delay, spare uint32
	}
	config := func(d *delay) [5]any {
		c := func(c class) classConfig { return classConfig{c.dev.Ref(), c.start, c.delay, 0} }
		return [5]any{d.len, d.argc, c(d.read), c(d.write), c(d.flush)}
	}
	f.Fuzz(func(t *testing.T, length uint16, params string) {
		tab, err := p.Build(dev, []stack.Line{{No: 1, Len: uint64(length), Type: "delay", Params: params}})
		if err != nil {
			if _, ok := err.(*stack.TableError); !ok {
				t.Fatalf("%q: error %T %v", params, err, err)
			}
			return
		}
		printed := tab.Lines()[0]
		lines, err := stack.ParseText(printed, stack.SourceInline)
		if err != nil {
			t.Fatalf("printed %q does not parse: %v", printed, err)
		}
		again, err := p.Build(dev, lines)
		if err != nil {
			t.Fatalf("%q printed as %q, which is refused: %v", params, printed, err)
		}
		a, b := tab.Segments()[0].Target.(*delay), again.Segments()[0].Target.(*delay)
		if config(a) != config(b) || again.Lines()[0] != printed {
			t.Fatalf("%q printed as %q builds another target: %v vs %v", params, printed, config(a), config(b))
		}
	})
}
