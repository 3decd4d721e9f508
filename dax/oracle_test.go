package dax_test

// The kernel oracle (testdata/kernel-oracle: what a Linux 6.1 guest did
// with one dm stack, see its NOTES.md) replayed on FILE leaves: the same
// tables over files of the guest's sizes, the same writes and reads
// through the stack, and the placement of every written sector checked on
// the leaf files themselves, read with os.ReadFile and not through the
// leaves or the stack. internal/oracle holds the replay; this file adds
// what only file leaves can show.

import (
	"errors"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle"
	"github.com/daxstack/daxstack/stack"
)

func TestKernelOracleFileLeaves(t *testing.T) {
	// The guest's leaves: nv0 = pmem1 (259:1), nv1 = pmem0 (259:0),
	// vp0 = pmem2 (259:2), 128 MiB each; ram0, ram1: 1 MiB brd disks.
	ls := fileLeaves(t, &dax.Opener{}, map[string]int64{"nv0": 262144, "nv1": 262144, "vp0": 262144, "ram0": 2048, "ram1": 2048})
	r := oracle.Build(t, stack.NewPool(ls.opener), oracle.Guest{
		Refs:    ls.ref,
		Printed: strings.NewReplacer("259:1", ls.ref["nv0"], "259:0", ls.ref["nv1"], "259:2", ls.ref["vp0"], "254:0", "s0", "pmem1", ls.ref["nv0"]),
		Head:    ls.head,
		Opened:  ls.adopt,
	})

	t.Run("tables", r.Tables)
	t.Run("io", r.IO)

	t.Run("placement on the leaf files", func(t *testing.T) {
		r.Placement(t)
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
		r.ReadsAfterBadblock(t)
		_, err := r.Top.ReadAt(make([]byte, 8*512), 320*512)
		var ioe *stack.IOError
		var pe *dax.PoisonError
		if !errors.As(err, &ioe) || !errors.As(err, &pe) || ioe.Sector != 324 || pe.Leaf != nv1.Name() || pe.Bad != (extent.Extent{Start: 300, Len: 4}) {
			t.Errorf("read top 320+8: %v; want top sector 324, %s sectors 300+4", err, nv1.Name())
		}
	})

	t.Run("refused", r.Refused)
	t.Run("ramdisks", r.Ramdisks)
}
