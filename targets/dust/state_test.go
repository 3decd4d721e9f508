package dust

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// TestStateRoundTrip: a fresh target given another's state behaves the
// same: the same replies, status, failing sectors and I/O outcomes,
// including what later writes do to the list.
func TestStateRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const table = "0 4096 dust /dev/ram0 16 1024"
	for round := range 20 {
		a, _ := build(t, table)
		for range rng.IntN(40) {
			args := []string{"addbadblock", strconv.Itoa(rng.IntN(2060))}
			if rng.IntN(3) == 0 {
				args = append(args, strconv.Itoa(rng.IntN(4)))
			}
			a.Message(args)
		}
		if rng.IntN(4) != 0 {
			msg(t, a, "enable")
		}
		if rng.IntN(2) == 0 {
			msg(t, a, "quiet")
		}
		b, _ := build(t, table)
		if err := b.Restore(a.State()); err != nil {
			t.Fatalf("round %d: Restore: %v", round, err)
		}
		for _, q := range [][]string{{"listbadblocks"}, {"countbadblocks"}, {"queryblock", "5"}} {
			if x, y := msg(t, a, q...), msg(t, b, q...); x != y {
				t.Errorf("round %d: %q: %q vs %q", round, q, x, y)
			}
		}
		if a.Status() != b.Status() || !a.Failing().Equal(b.Failing()) || !bytes.Equal(a.State(), b.State()) {
			t.Errorf("round %d: status %q/%q, failing %v/%v", round, a.Status(), b.Status(), a.Failing(), b.Failing())
		}
		for range 50 {
			op := []stack.Op{stack.OpRead, stack.OpWrite, stack.OpWriteZeroes, stack.OpDiscard, stack.OpFlush}[rng.IntN(5)]
			s, n := uint64(rng.IntN(4090)), uint64(1+rng.IntN(6))
			x, _ := a.MapIO(bio(op, s, n))
			y, _ := b.MapIO(bio(op, s, n))
			if x != y {
				t.Fatalf("round %d: %v %d+%d: %v vs %v", round, op, s, n, x, y)
			}
		}
		if !bytes.Equal(a.State(), b.State()) {
			t.Errorf("round %d: states drifted apart under the same I/O", round)
		}
	}
}

// TestRestoreRefuses: states that are not a dust state are refused with
// EINVAL and change nothing.
func TestRestoreRefuses(t *testing.T) {
	d, _ := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "addbadblock", "3", "1")
	msg(t, d, "enable")
	before := d.State()
	if !bytes.Equal(before, []byte{1, 1, 1, 3, 1}) {
		t.Fatalf("state %v", before)
	}
	for _, tc := range []struct {
		name  string
		state []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"only a version", []byte{1}},
		{"another version", []byte{2, 0, 0}},
		{"version 0", []byte{0, 0, 0}},
		{"unknown flags", []byte{1, 4, 0}},
		{"a count past the bytes", []byte{1, 0, 3, 1, 0}},
		{"a truncated block", []byte{1, 0, 1, 0x80}},
		{"a block without its count", []byte{1, 0, 1, 5}},
		{"a repeated block", []byte{1, 0, 2, 5, 0, 0, 0}},
		{"trailing bytes", []byte{1, 0, 1, 5, 0, 9}},
		{"an unreadable count", []byte{1, 0, 0x80, 0x80}},
		{"a block past the sector range", append([]byte{1, 0, 1}, append(uvarint(1<<62), 0)...)},
		{"a block overflowing the previous", append(append([]byte{1, 0, 2, 5, 0}, uvarint(1<<64-1)...), 0)},
		{"text", []byte("60 62 70")},
	} {
		err := d.Restore(tc.state)
		if err == nil || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: Restore = %v, want an EINVAL error", tc.name, err)
		}
		if !bytes.Equal(d.State(), before) {
			t.Errorf("%s: the refused state changed the target", tc.name)
		}
	}
	// The empty list is a valid state.
	if err := d.Restore([]byte{1, 0, 0}); err != nil || msg(t, d, "countbadblocks") != "countbadblocks: 0 badblock(s) found" {
		t.Errorf("empty state: %v", err)
	}
}

func uvarint(v uint64) []byte {
	var out []byte
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// TestConcurrent runs I/O, messages and the readers at once (for -race).
func TestConcurrent(t *testing.T) {
	d, _ := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "enable")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 500 {
				switch rng.IntN(6) {
				case 0:
					d.Message([]string{"addbadblock", strconv.Itoa(rng.IntN(100))})
				case 1:
					d.MapIO(bio(stack.OpWrite, uint64(rng.IntN(100)), 2))
				case 2:
					d.MapIO(bio(stack.OpRead, uint64(rng.IntN(100)), 2))
				case 3:
					d.Failing()
				case 4:
					d.State()
				case 5:
					d.Status()
					d.Message([]string{"listbadblocks"})
				}
			}
		}()
	}
	wg.Wait()
}
