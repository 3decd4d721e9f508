//go:build guest

package guest

// A namespace destroyed under a stack (ndctl destroy-namespace -f) and
// made again with the same identity. What the kernel gives a re-created
// namespace: the same region, size, name and (with --uuid) the same
// namespace UUID; usually the same kernel name and device number (the
// lowest free ones); always a new diskseq. A raw namespace's block device
// hangs off the namespace itself, so /sys/block/pmemN/device/uuid is the
// namespace UUID. A fsdax namespace's block device hangs off its pfn
// device, whose own UUID (which ndctl list shows as the namespace's
// "uuid") is new every time ndctl sets one up; the namespace UUID is one
// level further, /sys/block/pmemN/device/namespace -> namespaceX.Y/uuid.

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// identity is what sysfs says about a namespace's block device.
type identity struct {
	name, devno, diskseq string
	deviceUUID           string // /sys/block/pmemN/device/uuid
	namespaceUUID        string // the namespace's own
}

func identityOf(t *testing.T, n *namespace) identity {
	id := identity{name: n.Blockdev, devno: n.devno(t), diskseq: n.blockAttr(t, "diskseq"), deviceUUID: n.blockAttr(t, "device/uuid")}
	id.namespaceUUID = sysfs(t, filepath.Join("/sys/bus/nd/devices", n.Dev, "uuid"))
	return id
}

func (id identity) String() string {
	return fmt.Sprintf("%s %s diskseq %s, block device's parent uuid %s, namespace uuid %s", id.name, id.devno, id.diskseq, id.deviceUUID, id.namespaceUUID)
}

func TestNamespaceLostRestored(t *testing.T) {
	for _, c := range []struct {
		mode, uuid string
	}{
		{"raw", "6d617873-7461-636b-0000-000000000001"},
		{"fsdax", "6d617873-7461-636b-0000-000000000002"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			s := newSandbox(t)
			a := createNamespace(t, region0, "fsdax", "64M")
			args := []string{"-u", c.uuid, "-n", "daxstack-x"}
			x := createNamespace(t, region1, c.mode, "64M", args...)
			s.create("s0", fmt.Sprintf("0 %d striped 2 8 %s 0 %s 0\n", 2*bbStripeLen, a.node(), x.node()))
			s.create("top", fmt.Sprintf("0 %d linear s0 %d\n", bbTopLen, bbTopOff))
			// A namespace the daemon holds cannot be destroyed, even with
			// -f (TestClaimedNamespace): this test's surprise removal needs
			// a daemon that does not hold its leaves.
			s.serve("--no-hold")
			w := s.watch("--since", "0")
			before := identityOf(t, x)
			if before.namespaceUUID != c.uuid {
				t.Fatalf("create-namespace -u %s made namespace uuid %s", c.uuid, before.namespaceUUID)
			}

			// x is stripe 1: every s0 chunk with an odd number, and the
			// top sectors over them.
			var s0Lost, topLost []uint64
			for sec := uint64(0); sec < 2*bbStripeLen; sec++ {
				if sec/8%2 == 1 {
					s0Lost = append(s0Lost, sec)
					if sec >= bbTopOff && sec-bbTopOff < bbTopLen {
						topLost = append(topLost, sec-bbTopOff)
					}
				}
			}
			start := time.Now()
			x.destroy(t)
			ev := w.wait(t, 30*time.Second, "lost", "top")
			t.Logf("lost on top %v after destroy-namespace", time.Since(start).Round(10*time.Millisecond))
			if got, want := runs(ev.Ranges), sectorRuns(topLost); got != want {
				t.Errorf("lost on top: %d runs, want %d (first %q, want %q)", strings.Count(got, "\n")+1, strings.Count(want, "\n")+1, firstLine(got), firstLine(want))
			}
			if ev := w.wait(t, 5*time.Second, "lost", "s0"); runs(ev.Ranges) != sectorRuns(s0Lost) {
				t.Errorf("lost on s0: first %q, want %q", firstLine(runs(ev.Ranges)), firstLine(sectorRuns(s0Lost)))
			}
			if r := s.try(nil, "read", "top", "--sector", "0", "--count", "1"); r.err == nil {
				t.Errorf("read top 0 (on the destroyed namespace) succeeded")
			}
			if r := s.try(nil, "read", "top", "--sector", "8", "--count", "1"); r.err != nil {
				t.Errorf("read top 8 (on the namespace still there):\n%v", r)
			}

			x.recreate(t, region1, "64M", args...)
			after := identityOf(t, x)
			t.Logf("%s namespace before: %v", c.mode, before)
			t.Logf("%s namespace after:  %v", c.mode, after)
			if after.namespaceUUID != c.uuid {
				t.Fatalf("re-created namespace has uuid %s, want %s", after.namespaceUUID, c.uuid)
			}
			if after.devno != before.devno {
				t.Logf("the kernel gave the re-created namespace another device number (%s, was %s)", after.devno, before.devno)
			}
			start = time.Now()
			ev, ok := w.poll(30*time.Second, func(e event) bool { return e.Kind == "restored" && e.Device == "top" })
			if !ok {
				t.Fatalf("no restored event on top within 30s of re-creating the namespace (same namespace uuid %s); events %+v\nrescan: %s", c.uuid, w.all(), s.run(nil, "rescan"))
			}
			t.Logf("restored on top %v after create-namespace", time.Since(start).Round(10*time.Millisecond))
			if got, want := runs(ev.Ranges), sectorRuns(topLost); got != want {
				t.Errorf("restored on top: first %q, want %q", firstLine(got), firstLine(want))
			}
			data := Pattern(0, 1)
			s.run(data, "write", "top", "--sector", "0")
			if got := s.run(nil, "read", "top", "--sector", "0", "--count", "1"); got != string(data) {
				t.Errorf("read top 0 after restore: not what was written")
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
