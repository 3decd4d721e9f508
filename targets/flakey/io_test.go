package flakey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestIntervals: down when the whole seconds since the build, modulo
// up+down, reach up; Condition follows.
func TestIntervals(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 2 3")
	t0 := e.clock.Boottime()
	for _, tc := range []struct {
		at   time.Duration
		down bool
	}{
		{0, false}, {time.Second - 1, false}, {time.Second, false}, {2*time.Second - 1, false},
		{2 * time.Second, true}, {4*time.Second + 999*time.Millisecond, true},
		{5 * time.Second, false}, {7 * time.Second, true}, {10 * time.Second, false},
		{1000*5*time.Second + 2*time.Second, true},
	} {
		e.clock.set(t0 + tc.at)
		if got := f.isDown(); got != tc.down {
			t.Errorf("at +%v: down %v, want %v", tc.at, got, tc.down)
		}
		want := ""
		if tc.down {
			want = "down"
		}
		if c := f.Condition(); c != want {
			t.Errorf("at +%v: Condition() = %q", tc.at, c)
		}
	}
	// up 0: always down; down 0: never.
	always := e.build(t, "a", "0 8 flakey /dev/ram0 0 0 1")
	never := e.build(t, "n", "0 8 flakey /dev/ram0 0 1 0")
	for s := range 5 {
		e.clock.set(t0 + time.Duration(s)*time.Second)
		if !always.isDown() || never.isDown() {
			t.Errorf("+%ds: 0/1 down %v, 1/0 down %v", s, always.isDown(), never.isDown())
		}
	}
}

// outcome is what happened to a request.
type outcome string

const (
	pass outcome = "pass" // sent below untouched
	fail outcome = "fail" // EIO
	drop outcome = "drop" // acknowledged, not sent
	bent outcome = "bent" // sent below, byte 3 set to 7 (corrupt_bio_byte 3 _ 7 0)
)

// TestDownInterval: every feature set against every op, in the down
// interval (the up interval passes everything: TestUpInterval), as
// mainline's flakey_map and flakey_end_io decide: reads fail only with
// error_reads; writes, write-zeroes, discards and flushes are all writes
// to dm-flakey: dropped by drop_writes, failed by error_writes.
func TestDownInterval(t *testing.T) {
	ops := []stack.Op{stack.OpRead, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard, stack.OpFlush}
	tests := []struct {
		spec string
		want [5]outcome // by ops
	}{
		{"", [5]outcome{fail, fail, fail, fail, fail}},
		{"1 error_reads", [5]outcome{fail, pass, pass, pass, pass}},
		{"1 drop_writes", [5]outcome{pass, drop, drop, drop, drop}},
		{"1 error_writes", [5]outcome{pass, fail, fail, fail, fail}},
		{"2 error_reads drop_writes", [5]outcome{fail, drop, drop, drop, drop}},
		{"2 error_reads error_writes", [5]outcome{fail, fail, fail, fail, fail}},
		{"5 corrupt_bio_byte 3 r 7 0", [5]outcome{bent, pass, pass, pass, pass}},
		{"5 corrupt_bio_byte 3 w 7 0", [5]outcome{pass, bent, bent, pass, pass}},
		{"6 drop_writes corrupt_bio_byte 3 r 7 0", [5]outcome{bent, drop, drop, drop, drop}},
		{"6 error_reads corrupt_bio_byte 3 w 7 0", [5]outcome{fail, bent, bent, pass, pass}},
		{"5 corrupt_bio_byte 3 w 7 1", [5]outcome{pass, bent, bent, pass, pass}},      // mask 1: REQ_OP_WRITE
		{"5 corrupt_bio_byte 3 r 7 1", [5]outcome{pass, pass, pass, pass, pass}},      // a read never has it
		{"5 corrupt_bio_byte 3 w 7 131072", [5]outcome{pass, pass, pass, pass, pass}}, // REQ_FUA: not these
		{"5 corrupt_bio_byte 3 w 7 2048", [5]outcome{pass, pass, pass, pass, pass}},   // REQ_SYNC: never set here
		{"5 corrupt_bio_byte 4097 w 7 0", [5]outcome{pass, pass, pass, pass, pass}},   // past the request's end (4096 bytes)
	}
	for _, tc := range tests {
		for i, op := range ops {
			t.Run(fmt.Sprintf("%s/%v", tc.spec, op), func(t *testing.T) {
				e := newEnv(1)
				f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 0 10 "+tc.spec)
				got := run(t, e, f, op, false)
				if got != tc.want[i] {
					t.Errorf("%v: %s, want %s", op, got, tc.want[i])
				}
			})
		}
	}
}

// TestUpInterval: in the up interval no feature does anything.
func TestUpInterval(t *testing.T) {
	for _, spec := range []string{"", "1 error_reads", "1 drop_writes", "1 error_writes", "5 corrupt_bio_byte 3 r 7 0", "5 corrupt_bio_byte 3 w 7 0", "4 random_read_corrupt 1000000000 random_write_corrupt 1000000000"} {
		for _, op := range []stack.Op{stack.OpRead, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard, stack.OpFlush} {
			e := newEnv(1)
			f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 10 10 "+spec)
			if got := run(t, e, f, op, false); got != pass {
				t.Errorf("%q %v in the up interval: %s", spec, op, got)
			}
		}
	}
}

// TestFUAMask: corrupt_bio_byte's mask REQ_FUA picks FUA writes.
func TestFUAMask(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 0 10 5 corrupt_bio_byte 3 w 7 131072")
	if got := run(t, e, f, stack.OpWrite, true); got != bent {
		t.Errorf("FUA write: %s", got)
	}
	if got := run(t, e, f, stack.OpWrite, false); got != pass {
		t.Errorf("plain write: %s", got)
	}
}

// run sends one request of op over sectors 8..15 of f's device (f over a
// ramdisk holding the pattern) through the pool, and says what happened,
// from the outcome and the bytes: what the read returned, what the
// ramdisk holds after a write or a write-zeroes (which reaches flakey as a
// write of zeros), whether a discard or a flush reached the ramdisk. A
// write's own buffer must come back untouched.
func run(t *testing.T, e *env, f *flakey, op stack.Op, fua bool) outcome {
	t.Helper()
	pattern := transcript.Pattern(0, 64)
	if _, err := e.rd.Ram0.WriteAt(pattern, 0); err != nil {
		t.Fatal(err)
	}
	b := &stack.Bio{Op: op, Pos: 8 * 512, Len: 8 * 512, FUA: fua}
	var sent []byte
	switch op {
	case stack.OpRead:
		b.Data = make([]byte, b.Len)
	case stack.OpWrite:
		b.Data = transcript.Pattern(100, 8) // different bytes from what the disk holds
		sent = bytes.Clone(b.Data)
	case stack.OpFlush:
		b.Pos, b.Len = 0, 0
	}
	syncs, discards := e.rd.Ram0.Syncs(), e.rd.Ram0.Discards()
	err := doIO(e.devOf(t, f), b)
	if op == stack.OpWrite && !bytes.Equal(transcript.Pattern(100, 8), sent) {
		t.Fatalf("the write's buffer was changed")
	}
	disk := make([]byte, 8*512)
	e.rd.Ram0.ReadAt(disk, 8*512)
	var before, expect []byte // the bytes in question: before, and if sent untouched
	switch {
	case err != nil:
		if !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrDown) {
			t.Fatalf("failed with %v", err)
		}
		if !bytes.Equal(disk, pattern[8*512:16*512]) {
			t.Fatalf("a failed %v changed the disk", op)
		}
		return fail
	case op == stack.OpRead:
		before, expect = b.Data, pattern[8*512:16*512]
	case op == stack.OpWrite:
		before, expect = disk, transcript.Pattern(100, 8)
		if bytes.Equal(disk, pattern[8*512:16*512]) {
			return drop
		}
	case op == stack.OpWriteZeroes:
		before, expect = disk, make([]byte, 8*512)
		if bytes.Equal(disk, pattern[8*512:16*512]) {
			return drop
		}
	case op == stack.OpDiscard:
		if !bytes.Equal(disk, pattern[8*512:16*512]) {
			t.Fatal("a discard changed the disk")
		}
		return reached(e.rd.Ram0.Discards() - discards)
	default:
		return reached(e.rd.Ram0.Syncs() - syncs)
	}
	switch diff := differences(before, expect); {
	case len(diff) == 0:
		return pass
	case len(diff) == 1 && diff[0] == 2 && before[2] == 7:
		return bent
	default:
		t.Fatalf("%v: bytes %v differ", op, diff)
	}
	return ""
}

// reached tells, for a request with no data to look at, from how many
// times it reached the ramdisk, whether it was sent on or acknowledged.
func reached(n int) outcome {
	switch n {
	case 0:
		return drop
	case 1:
		return pass
	}
	return outcome(fmt.Sprintf("reached the ramdisk %d times", n))
}

func differences(a, b []byte) []int {
	var d []int
	for i := range a {
		if a[i] != b[i] {
			d = append(d, i)
		}
	}
	return d
}

// TestRandomCorruption: random_read_corrupt and random_write_corrupt at
// 100% change one byte of every request in the down interval, chosen by
// the pool's seeded source: the same seed gives the same bytes; at 0%...
// the feature is off; at 50% about half the requests are hit.
func TestRandomCorruption(t *testing.T) {
	corrupted := func(seed uint64, spec string, writes bool) (hits int, where []int) {
		e := newEnv(seed)
		f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 0 10 "+spec)
		d := e.devOf(t, f)
		for range 200 {
			e.rd.Ram0.WriteAt(transcript.Pattern(0, 16), 0)
			var got, want []byte
			if writes {
				if err := doIO(d, write(8, transcript.Pattern(8, 8))); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, 8*512)
				e.rd.Ram0.ReadAt(got, 8*512)
			} else {
				b := read(8, 8)
				if err := doIO(d, b); err != nil {
					t.Fatal(err)
				}
				got = b.Data
			}
			want = transcript.Pattern(8, 8)
			d := differences(got, want)
			if len(d) > 1 {
				t.Fatalf("%s: %d bytes changed", spec, len(d))
			}
			if len(d) == 1 {
				hits++
				where = append(where, d[0])
			}
		}
		return hits, where
	}
	for _, writes := range []bool{false, true} {
		spec := "2 random_read_corrupt "
		if writes {
			spec = "2 random_write_corrupt "
		}
		h1, w1 := corrupted(7, spec+"1000000000", writes)
		h2, w2 := corrupted(7, spec+"1000000000", writes)
		// A random value may equal the byte it replaces (1 in 256).
		if h1 < 190 || h1 != h2 || fmt.Sprint(w1) != fmt.Sprint(w2) {
			t.Errorf("%s at 100%%: %d and %d hits, same places: %v", spec, h1, h2, fmt.Sprint(w1) == fmt.Sprint(w2))
		}
		if _, w3 := corrupted(8, spec+"1000000000", writes); fmt.Sprint(w3) == fmt.Sprint(w1) {
			t.Errorf("%s: another seed corrupted the same bytes", spec)
		}
		if h, _ := corrupted(7, spec+"500000000", writes); h < 60 || h > 140 {
			t.Errorf("%s at 50%%: %d hits of 200", spec, h)
		}
	}
}

// TestEndIOWithoutMapIO: EndIO of a request it did not map while down
// changes nothing (an up-interval read, an error).
func TestEndIOWithoutMapIO(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 0 10 5 corrupt_bio_byte 1 r 9 0")
	b := read(0, 1)
	if err := f.EndIO(b, nil); err != nil || b.Data[0] != 0 {
		t.Errorf("EndIO of an unmapped read: %v, byte %d", err, b.Data[0])
	}
	f.MapIO(b)
	if err := f.EndIO(b, syscall.EIO); err != syscall.EIO || b.Data[0] != 0 {
		t.Errorf("EndIO of a failed read: %v, byte %d", err, b.Data[0])
	}
}

// TestWriteZeroesCorruptedPerMiB: a write-zeroes reaches flakey as writes
// of zeros of 1 MiB each from the start of the client's request (the
// kernel's zero-page bios), so corrupt_bio_byte w sets the Nth byte of
// each: four times in 4 MiB, counted from the request's start even when
// it starts inside the segment, and the part of a 1 MiB piece in the
// segment is a piece of its own.
func TestWriteZeroesCorruptedPerMiB(t *testing.T) {
	e := newEnv(1)
	stacktest.MustCreate(t, e.pool, "lower", "0 16384 linear /dev/ram0 0")
	f := e.build(t, "f", "0 2048 linear /dev/ram1 0\n2048 14336 flakey lower 0 0 10 5 corrupt_bio_byte 3 w 7 0")
	d := e.devOf(t, f)
	const mib = 1 << 20
	for _, tc := range []struct {
		off, n int64
		want   []int64 // bytes of ram0 set to 7
	}{
		{2048 * 512, 4 * mib, []int64{2, mib + 2, 2*mib + 2, 3*mib + 2}},
		{2048*512 + 4096, 2*mib - 8192, []int64{4096 + 2, mib + 4096 + 2}},
		// Starting in the linear part: the first piece in flakey is
		// what is left of the request's first MiB.
		{2048*512 - 4096, 2 * mib, []int64{2, mib - 4096 + 2}},
	} {
		e.rd.Ram0.WriteAt(transcript.Pattern(0, 16384), 0)
		if n, err := d.Do(context.Background(), stack.Request{Op: stack.OpWriteZeroes, Off: tc.off, Len: tc.n}); err != nil || n != tc.n {
			t.Fatalf("write-zeroes %d+%d: %d, %v", tc.off, tc.n, n, err)
		}
		var got []int64
		data := e.rd.Ram0.Data()
		lo := max(tc.off, 2048*512) - 2048*512
		for i := lo; i < tc.off+tc.n-2048*512; i++ {
			switch data[i] {
			case 0:
			case 7:
				got = append(got, i)
			default:
				t.Fatalf("%d+%d: byte %d of ram0 is %d", tc.off, tc.n, i, data[i])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%d+%d: corrupted bytes %v, want %v", tc.off, tc.n, got, tc.want)
		}
	}
}

// TestConcurrent: I/O, EndIO and the readers at once, for -race.
func TestConcurrent(t *testing.T) {
	e := newEnv(1)
	f := e.build(t, "f", "0 1024 flakey /dev/ram0 0 0 10 4 random_read_corrupt 500000000 random_write_corrupt 500000000")
	d := e.devOf(t, f)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				s := uint64(g*100 + i%100)
				doIO(d, read(s, 1))
				doIO(d, write(s, transcript.Pattern(s, 1)))
				f.Condition()
				f.State()
				f.Table()
			}
		}()
	}
	wg.Wait()
}
