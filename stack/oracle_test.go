package stack_test

// The kernel oracle: testdata/kernel-oracle holds what a real Linux 6.1
// kernel did with one stack (dm-stack.sh ran in a guest; dm-stack.out is
// what it printed; NOTES.md explains it). This test builds the same stack
// on in-memory leaves with the guest's device numbers and checks, line by
// line: the printed tables, where every written sector landed on every
// leaf, which reads and writes failed, the translation of the injected bad
// block, and the words of the refused tables. internal/oracle holds the
// replay; this file adds the checks of the mapping, the reverse map and
// the translated events.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// oracleDir is the kernel oracle's directory (the fuzz seeds read it too).
const oracleDir = oracle.Dir + "/"

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

func TestKernelOracle(t *testing.T) {
	leaves, open := oracleLeaves()
	p := stack.NewPool(open)
	// The leaves print as the guest's device numbers and have its kernel
	// names; only s0 differs: the kernel prints it as its device number
	// 254:0, daxstack prints mapped devices by name.
	r := oracle.Build(t, p, oracle.Guest{
		Refs: map[string]string{
			"nv0": "/dev/leaf/nv0", "nv1": "/dev/leaf/nv1", "vp0": "/dev/leaf/vp0",
			"ram0": "/dev/ram0", "ram1": "/dev/ram1",
		},
		Printed: strings.NewReplacer("254:0", "s0"),
		Head: func(_ testing.TB, leaf string, sectors int) []byte {
			return leaves[leaf].Data()[:sectors*512]
		},
	})
	s0, top := r.S0, r.Top

	t.Run("tables", r.Tables)
	t.Run("io", r.IO)

	t.Run("placement", func(t *testing.T) {
		want := r.Placement(t)
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
		// Events name a block device leaf by its node (rmapchain.LeafName).
		want := map[string]string{"/dev/pmem0": "{300+4}", "s0": "{348+4}", "top": "{324+4}"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("translated events %v, want %v", got, want)
		}
		br := rmapchain.BadRanges(p.Graph(), top.Dev(), s0.Dev())
		if br[top.Dev()].String() != "{324+4 1000+16}" || br[s0.Dev()].String() != "{348+4}" {
			t.Errorf("bad ranges top %v s0 %v", br[top.Dev()], br[s0.Dev()])
		}
		r.ReadsAfterBadblock(t)
	})

	t.Run("refused", r.Refused)
	t.Run("ramdisks", r.Ramdisks)
}
