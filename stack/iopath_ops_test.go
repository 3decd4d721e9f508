package stack_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// How each kind of request reaches a target with run-time behaviour (see
// stack.Bio).

// TestOpsAtTheGrid: reads and writes are cut at the segment's MaxIOLen
// grid; a discard is not (dm sends it whole); each Bio's EndIO gets the
// same Bio, its Private kept.
func TestOpsAtTheGrid(t *testing.T) {
	p, _ := ioPool(t)
	c := newCtl(t, "c")
	top := stacktest.MustCreate(t, p, "top", "0 64 linear /l 0\n64 1024 fake /l 64 "+ctlRef(t, "c")+" 16")
	ctx := context.Background()
	off, n := int64(60*512), int64(40*512) // top sectors 60..99: 4 of linear, then fake sectors 0..35
	for _, tc := range []struct {
		op   stack.Op
		want []bioRec
	}{
		{stack.OpRead, []bioRec{{stack.OpRead, 0, 16 * 512}, {stack.OpRead, 16 * 512, 16 * 512}, {stack.OpRead, 32 * 512, 4 * 512}}},
		{stack.OpWrite, []bioRec{{stack.OpWrite, 0, 16 * 512}, {stack.OpWrite, 16 * 512, 16 * 512}, {stack.OpWrite, 32 * 512, 4 * 512}}},
		{stack.OpDiscard, []bioRec{{stack.OpDiscard, 0, 36 * 512}}},
	} {
		c.set(func(c *fakeCtl) { c.bios, c.ends = nil, nil })
		req := stack.Request{Op: tc.op, Off: off, Len: n}
		if tc.op != stack.OpDiscard {
			req.Data = make([]byte, n)
		}
		if k, err := top.Do(ctx, req); err != nil || k != n {
			t.Fatalf("%v: %d, %v", tc.op, k, err)
		}
		if got := c.Bios(); !slices.Equal(got, tc.want) {
			t.Errorf("%v reached the target as %v, want %v", tc.op, got, tc.want)
		}
		c.set(func(c *fakeCtl) {
			if len(c.ends) != len(tc.want) || c.lostPrivate != 0 {
				t.Errorf("%v: %d EndIO calls, %d without the Bio's Private", tc.op, len(c.ends), c.lostPrivate)
			}
		})
	}
}

// TestWriteZeroesAsWrites: a write-zeroes reaches a target with run-time
// behaviour as writes of zeros, cut at the grid and at every MiB of the
// client's request from its start (the kernel's zero-page bios); a pure
// segment beside it takes the write-zeroes itself; the leaf ends up zeroed
// and its poison covered whole cleared, as by any write.
func TestWriteZeroesAsWrites(t *testing.T) {
	const mib = 1 << 20
	l := stacktest.NewMemLeaf("/l", "l", 16384, false)
	for i := range l.Data() {
		l.Data()[i] = 0x5a
	}
	p := stack.NewPool(stacktest.Opener(l))
	c := newCtl(t, "c")
	// top sectors 0..7 linear, 8..8199 fake (grid of 2100 sectors from its
	// start), then linear again.
	top := stacktest.MustCreate(t, p, "top", "0 8 linear /l 0\n8 8192 fake /l 8 "+ctlRef(t, "c")+" 2100\n8200 8184 linear /l 8200")
	off, n := int64(4*512), int64(8200*512+100*512-4*512)
	if k, err := top.Do(context.Background(), stack.Request{Op: stack.OpWriteZeroes, Off: off, Len: n}); err != nil || k != n {
		t.Fatalf("write-zeroes: %d, %v", k, err)
	}
	// The request's MiBs start at top byte 2048 (sector 4): its first ends
	// at fake byte mib-2048; the grid at fake sectors 2100, 4200, 6300.
	cuts := []uint64{0, mib - 2048, 2100 * 512, 2*mib - 2048, 4200 * 512, 3*mib - 2048, 6300 * 512, 4*mib - 2048, 8192 * 512}
	var want []bioRec
	for i := 1; i < len(cuts); i++ {
		want = append(want, bioRec{stack.OpWrite, cuts[i-1], cuts[i] - cuts[i-1]})
	}
	if got := c.Bios(); !slices.Equal(got, want) {
		t.Errorf("the target got %v, want %v", got, want)
	}
	for i, w := range c.Writes() {
		if !bytes.Equal(w, make([]byte, len(w))) {
			t.Errorf("write %d is not zeros", i)
		}
	}
	if !bytes.Equal(l.Data()[off:off+n], make([]byte, n)) || l.Data()[off-1] != 0x5a || l.Data()[off+n] != 0x5a {
		t.Error("the leaf is not zeroed exactly over the request")
	}
}

// TestMapIORewrite: after MapIO the request goes on as the target left
// it: a copy of a write's bytes is what lands (the client's buffer is left
// alone); a target that moves the request or changes its op makes it fail
// with ErrInvalid, and nothing is written.
func TestMapIORewrite(t *testing.T) {
	p, l := ioPool(t)
	c := newCtl(t, "c")
	top := stacktest.MustCreate(t, p, "top", "0 1024 fake /l 0 "+ctlRef(t, "c"))
	c.set(func(c *fakeCtl) {
		c.rewrite = func(b *stack.Bio) {
			if b.Op == stack.OpWrite {
				b.Data = bytes.Repeat([]byte{0xee}, len(b.Data))
			}
		}
	})
	buf := bytes.Repeat([]byte{1}, 1024)
	if _, err := top.WriteAt(buf, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Data()[512:1536], bytes.Repeat([]byte{0xee}, 1024)) || !bytes.Equal(buf, bytes.Repeat([]byte{1}, 1024)) {
		t.Error("the target's copy did not land, or the client's buffer changed")
	}
	for name, rw := range map[string]func(b *stack.Bio){
		"moved":      func(b *stack.Bio) { b.Pos += 512 },
		"shortened":  func(b *stack.Bio) { b.Data = b.Data[:10] },
		"read":       func(b *stack.Bio) { b.Op = stack.OpRead },
		"discard":    func(b *stack.Bio) { b.Op, b.Data = stack.OpDiscard, nil },
		"write-zero": func(b *stack.Bio) { b.Op, b.Data = stack.OpWriteZeroes, nil },
	} {
		c.set(func(c *fakeCtl) { c.rewrite = rw })
		before := bytes.Clone(l.Data()[:4096])
		_, err := top.WriteAt(buf, 2048)
		if !errors.Is(err, stack.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if !bytes.Equal(before, l.Data()[:4096]) {
			t.Errorf("%s: the refused write changed the leaf", name)
		}
	}
}
