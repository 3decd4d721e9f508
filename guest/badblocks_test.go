//go:build guest

package guest

// The kernel's badblocks lists on real pmem: what a user writes to
// /sys/block/pmemN/badblocks reaches daxstack's view of the leaf, the
// translated bad ranges of every device above, the daemon's events, and
// agrees with `ndctl list --media-errors`; and clearing, which QEMU's
// NVDIMM cannot do.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// stripedUp is where leaf sector x of stripe k lands in a striped target
// of n stripes and chunk c whose stripe starts at leaf sector off: the
// kernel's dm-stripe mapping, inverted.
func stripedUp(x, k, n, c, off uint64) uint64 {
	row, in := (x-off)/c, (x-off)%c
	return (row*n+k)*c + in
}

// The stack of the badblocks tests: s0 stripes two 64 MiB namespaces, a
// fsdax one and a raw one (2 stripes, chunk 8, from sector 0 of each); top
// is linear onto s0 from sector 24.
const (
	bbStripeLen = 65536
	bbTopOff    = 24
	bbTopLen    = 100000
)

func badblocksStack(t *testing.T, s *sandbox) (a, b *namespace) {
	a = createNamespace(t, region0, "fsdax", "64M")
	b = createNamespace(t, region1, "raw", "64M")
	s.create("s0", fmt.Sprintf("0 %d striped 2 8 %s 0 %s 0\n", 2*bbStripeLen, a.node(), b.node()))
	s.create("top", fmt.Sprintf("0 %d linear s0 %d\n", bbTopLen, bbTopOff))
	return a, b
}

// leafRows is `daxstack badblocks LEAF --reportformat json` in ndctl's
// shape.
func leafRows(s *sandbox, leaf string) []badblock {
	var out []badblock
	for _, r := range s.report("badblocks", "badblocks", leaf) {
		out = append(out, badblock{Offset: num(r["offset"]), Length: num(r["length"])})
	}
	return out
}

func TestBadblocksSysfsToDaemon(t *testing.T) {
	s := newSandbox(t)
	a, b := badblocksStack(t, s)
	d := s.serve() // the default configuration, as a user runs it
	w := s.watch("--since", "0")
	// Let the daemon settle (its first rescan, its watches) so that what
	// is measured below is how it notices a change, not how it starts.
	time.Sleep(2 * time.Second)

	// "300 4" on b (stripe 1): s0 604..607, top 580..583.
	s0Sec := stripedUp(300, 1, 2, 8, 0)
	topSec := s0Sec - bbTopOff
	if s0Sec != 604 || topSec != 580 {
		t.Fatalf("arithmetic: s0 %d top %d", s0Sec, topSec)
	}
	start := time.Now()
	b.injectBadblocks(t, 300, 4)
	// The kernel does not sysfs_notify a user's write to badblocks; the
	// daemon re-reads the file every 250 ms (service/sysfswatch), so it
	// sees the write within about a second, long before its periodic
	// rescan (30 s). The bound is generous (the guest is slow);
	// e2e's BenchmarkBadblocksWriteLatency measures the latency.
	const bound = 10 * time.Second
	ev := w.wait(t, bound, "media-error", "top")
	t.Logf("media-error on top %v after the sysfs write", time.Since(start).Round(100*time.Millisecond))
	if got, want := runs(ev.Ranges), fmt.Sprintf("%d 4", topSec); got != want {
		t.Errorf("media-error on top: ranges %q, want %q", got, want)
	}
	if got, dev := runs(ev.Cause.Ranges), ev.Cause.Device; got != "300 4" || (dev != b.node() && dev != b.devno(t) && dev != b.Blockdev) {
		t.Errorf("media-error on top: cause %s %q, want %s 300 4", dev, got, b.node())
	}
	if ev := w.wait(t, 5*time.Second, "media-error", "s0"); runs(ev.Ranges) != fmt.Sprintf("%d 4", s0Sec) {
		t.Errorf("media-error on s0: %q, want %d 4", runs(ev.Ranges), s0Sec)
	}

	for _, c := range []struct{ dev, want string }{
		{b.node(), "300 4"}, {"s0", fmt.Sprintf("%d 4", s0Sec)}, {"top", fmt.Sprintf("%d 4", topSec)}, {a.node(), ""},
	} {
		if got := s.badblocks(c.dev); got != c.want {
			t.Errorf("badblocks %s: %q, want %q", c.dev, got, c.want)
		}
	}
	// ndctl reads a raw namespace's list from its block device, the file
	// written above: ndctl and daxstack must agree.
	if got, nd := leafRows(s, b.node()), listNamespace(t, b.Dev).Badblocks; fmt.Sprint(got) != fmt.Sprint(nd) || len(nd) != 1 {
		t.Errorf("daxstack badblocks %s %v, ndctl list --media-errors %v", b.node(), got, nd)
	}

	// daxstack inject through the daemon: top 8..15 is s0 32..39, chunk
	// 4, stripe 0: a's sectors 16..23, written to a's kernel list.
	if stripe := (8 + bbTopOff) / 8 % 2; stripe != 0 {
		t.Fatalf("arithmetic: stripe %d", stripe)
	}
	out := s.run(nil, "inject", "top", "--sector", "8", "--count", "8")
	if !strings.Contains(out, "16 8") {
		t.Errorf("inject top 8+8 printed %q, want a's sectors 16 8", out)
	}
	if got := a.blockAttr(t, "badblocks"); got != "16 8" {
		t.Errorf("kernel badblocks of %s after inject: %q, want 16 8", a.node(), got)
	}
	// For a fsdax (or devdax) namespace ndctl reports the region's list
	// cut to the namespace, which a write to the disk's list does not
	// reach: ndctl shows none of what the kernel fails reads for.
	if nd := listNamespace(t, a.Dev).Badblocks; len(nd) != 0 {
		t.Errorf("ndctl list --media-errors of fsdax %s: %v; the kernel used to keep the region's list apart (daxstack says %v)", a.Dev, nd, leafRows(s, a.node()))
	}
	if got := fmt.Sprint(leafRows(s, a.node())); got != "[{16 8}]" {
		t.Errorf("daxstack badblocks %s: %s, want [{16 8}]", a.node(), got)
	}
	w.waitFor(t, 10*time.Second, "media-error on top 8 8", func(e event) bool {
		return e.Kind == "media-error" && e.Device == "top" && runs(e.Ranges) == "8 8"
	})
	if got := s.badblocks("top"); got != fmt.Sprintf("8 8\n%d 4", topSec) {
		t.Errorf("badblocks top after inject: %q", got)
	}
	viaDaemon := s.try(nil, "read", "top", "--sector", "15", "--count", "1")
	if viaDaemon.err == nil || !ioErr.MatchString(viaDaemon.stderr) {
		t.Errorf("read top 15 after inject:\n%v", viaDaemon)
	}
	// The same failure read without the daemon prints the same words.
	d.stop()
	local := s.try(nil, "read", "top", "--sector", "15", "--count", "1")
	if local.stderr != viaDaemon.stderr {
		t.Errorf("read top 15 fails with other words through the daemon:\n%s\nthan without it:\n%s", viaDaemon.stderr, local.stderr)
	}
}

// TestClearOnQemuFails: QEMU's NVDIMM has no clear-error DSM, so the
// pmem driver cannot clear poison; a write over bad sectors fails with
// EIO in the kernel itself and the list stays. daxstack must say that
// clearing failed and keep the range bad at every level.
func TestClearOnQemuFails(t *testing.T) {
	s := newSandbox(t)
	a := createNamespace(t, region0, "fsdax", "64M")
	s.create("top", fmt.Sprintf("0 100000 linear %s 1000\n", a.node()))
	a.injectBadblocks(t, 1100, 8) // top 100..107

	stillBad := func(what string) {
		t.Helper()
		if got := a.blockAttr(t, "badblocks"); got != "1100 8" {
			t.Errorf("after %s the kernel's list is %q, want 1100 8", what, got)
		}
		if got := s.badblocks(a.node()); got != "1100 8" {
			t.Errorf("after %s daxstack badblocks %s: %q, want 1100 8", what, a.node(), got)
		}
		if got := s.badblocks("top"); got != "100 8" {
			t.Errorf("after %s daxstack badblocks top: %q, want 100 8", what, got)
		}
	}
	stillBad("the injection")
	for _, c := range []struct {
		what  string
		stdin []byte
		args  []string
	}{
		{"clear-errors of the leaf's range", nil, []string{"clear-errors", a.node(), "--sector", "1100", "--count", "8"}},
		{"clear-errors of top", nil, []string{"clear-errors", "top"}},
		{"a write covering the bad sectors", Pattern(100, 8), []string{"write", "top", "--sector", "100"}},
		{"a write around the bad sectors", Pattern(96, 16), []string{"write", "top", "--sector", "96"}},
	} {
		r := s.try(c.stdin, c.args...)
		if r.err == nil || !ioErr.MatchString(r.stderr) {
			t.Errorf("%s must fail with an I/O error:\n%v", c.what, r)
		}
		stillBad(c.what)
	}
	for _, ev := range s.events() {
		if ev.Kind == "cleared" {
			t.Errorf("a cleared event was logged though nothing was cleared: %+v", ev)
		}
	}
	if r := s.try(nil, "read", "top", "--sector", "100", "--count", "1"); r.err == nil || !ioErr.MatchString(r.stderr) {
		t.Errorf("read top 100 after the failed clears:\n%v", r)
	}
	if r := s.try(nil, "read", "top", "--sector", "108", "--count", "1"); r.err != nil {
		t.Errorf("read top 108, next to the bad range:\n%v", r)
	}
}
