package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue #10: leaf health as a user meets it through the binary.

// report decodes a --reportformat json report's rows of one kind.
func (s *sandbox) report(kind string, args ...string) []map[string]any {
	s.t.Helper()
	out := s.run(append(args, "--reportformat", "json")...)
	var rep struct {
		Report []map[string][]map[string]any `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		s.t.Fatalf("daxstack %v: %v\n%s", args, err, out)
	}
	if len(rep.Report) != 1 {
		s.t.Fatalf("daxstack %v: %d reports, want 1\n%s", args, len(rep.Report), out)
	}
	rows, ok := rep.Report[0][kind]
	if !ok {
		s.t.Fatalf("daxstack %v: no %q rows\n%s", args, kind, out)
	}
	return rows
}

// sectorSet expands "start count" lines (badblocks' text) into sectors.
func sectorSet(t *testing.T, text string) map[uint64]bool {
	t.Helper()
	out := map[uint64]bool{}
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l == "" {
			continue
		}
		var a, n uint64
		if _, err := fmt.Sscanf(l, "%d %d", &a, &n); err != nil {
			t.Fatalf("badblocks line %q: %v", l, err)
		}
		for i := range n {
			out[a+i] = true
		}
	}
	return out
}

// TestReadOnlyHonoured: create -r and concise ro make read-only devices:
// info says so (State, attr r), table --concise prints ro, and writes are
// refused with EROFS changing nothing, with and without the daemon.
func TestReadOnlyHonoured(t *testing.T) {
	for _, viaDaemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "embedded", true: "daemon"}[viaDaemon], func(t *testing.T) {
			s := newQuickSandbox(t)
			leaf := s.file("a.img", 1<<20)
			if err := os.WriteFile(leaf, []byte("ORIGINAL"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(leaf, 1<<20); err != nil {
				t.Fatal(err)
			}
			if viaDaemon {
				s.startDaemon()
			}
			s.run("create", "-r", "r1", "--table", "0 64 linear "+leaf+" 0")
			s.run("create", "--concise", "r2,,,ro,0 64 linear "+leaf+" 0;w1,,,rw,0 64 linear "+leaf+" 64")
			for _, c := range []struct {
				dev  string
				ro   bool
				attr string
			}{{"r1", true, "L--r"}, {"r2", true, "L--r"}, {"w1", false, "L--w"}} {
				info := s.run("info", c.dev)
				if got := strings.Contains(info, "(READ-ONLY)"); got != c.ro {
					t.Errorf("info %s: read-only %v, want %v:\n%s", c.dev, got, c.ro, info)
				}
				if got := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "attr", c.dev)); got != c.attr {
					t.Errorf("info -c -o attr %s: %q, want %q", c.dev, got, c.attr)
				}
			}
			concise := s.run("table", "--concise")
			for _, want := range []string{"r1,,0,ro,0 64 linear " + leaf + " 0", "r2,,1,ro,0 64 linear " + leaf + " 0", "w1,,2,rw,0 64 linear " + leaf + " 64"} {
				if !strings.Contains(concise, want) {
					t.Errorf("table --concise: no %q in %q", want, concise)
				}
			}
			sum := s.dbChecksum()
			for _, dev := range []string{"r1", "r2"} {
				c := s.cmd("write", dev, "--sector", "0")
				c.Stdin = strings.NewReader(strings.Repeat("X", 512))
				r := s.tryCmd(c)
				if r.code != 1 || !strings.Contains(strings.ToLower(r.err), "read-only file system") {
					t.Errorf("write %s: exit %d, stderr %q; want 1 and EROFS", dev, r.code, r.err)
				}
			}
			if s.dbChecksum() != sum && !viaDaemon {
				t.Errorf("a refused write changed the database")
			}
			b, err := os.ReadFile(leaf)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:8]) != "ORIGINAL" {
				t.Errorf("a refused write reached the leaf: %q", b[:8])
			}
			c := s.cmd("write", "w1", "--sector", "0")
			c.Stdin = strings.NewReader(strings.Repeat("W", 512))
			if r := s.tryCmd(c); r.code != 0 {
				t.Errorf("write to the writable w1: %+v", r)
			}
		})
	}
}

// shrinkStack is the stack: sx striped (chunk 8) over x.img and
// y.img of 8192 sectors each, top linear over all of sx.
func shrinkStack(s *sandbox) (x, y string) {
	x, y = s.file("x.img", 8192*512), s.file("y.img", 8192*512)
	s.run("create", "sx", "--table", fmt.Sprintf("0 16384 striped 2 8 %s 0 %s 0", x, y))
	s.run("create", "top", "--table", "0 16384 linear sx 0")
	return x, y
}

// shrunkSx is sx's sectors backed by x.img past sector 2048: stripe 0 of
// every chunk from x's chunk 256 on.
func shrunkSx() map[uint64]bool {
	want := map[uint64]bool{}
	for c := uint64(256); c < 1024; c++ {
		for i := range uint64(8) {
			want[c*16+i] = true
		}
	}
	return want
}

// TestShrunkLeaf: truncating a leaf file under a stack makes the sectors
// past its new end bad ranges of the leaf, translated up: badblocks of
// every level, degraded in info, ls and JSON, reads failing exactly there,
// rescan reporting it with media-error events, and cleared ones when it
// grows back.
func TestShrunkLeaf(t *testing.T) {
	for _, viaDaemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "embedded", true: "daemon"}[viaDaemon], func(t *testing.T) {
			s := newQuickSandbox(t)
			x, _ := shrinkStack(s)
			if viaDaemon {
				s.startDaemon("--rescan", "1h")
			}
			if err := os.Truncate(x, 1<<20); err != nil {
				t.Fatal(err)
			}
			want := shrunkSx()
			for _, dev := range []string{"sx", "top"} {
				got := sectorSet(t, s.run("badblocks", dev))
				if !mapsEqual(got, want) {
					t.Errorf("badblocks %s: %d sectors, want %d", dev, len(got), len(want))
				}
			}
			if got := sectorSet(t, s.run("badblocks", x)); len(got) != 6144 || !got[2048] || !got[8191] || got[2047] {
				t.Errorf("badblocks %s: %d sectors, want 2048..8191", x, len(got))
			}
			for _, dev := range []string{"sx", "top"} {
				if h := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "health", dev)); h != "degraded" {
					t.Errorf("info %s health %q, want degraded", dev, h)
				}
			}
			if ls := s.run("ls"); strings.Count(ls, "degraded: shrunk "+x) != 2 {
				t.Errorf("ls:\n%s", ls)
			}
			for _, r := range s.report("device", "ls") {
				if r["degraded"] != true {
					t.Errorf("ls JSON: %v not degraded", r)
				}
			}
			// Reads fail exactly on the bad sectors: 4095 is good (y's),
			// 4096 is x's sector 2048, 4104 is y's again.
			for sec, bad := range map[uint64]bool{4095: false, 4096: true, 4103: true, 4104: false, 16383: false, 16375: true} {
				r := s.tryRun("read", "top", "--sector", fmt.Sprint(sec), "--count", "1")
				if got := r.code != 0; got != bad || bad != want[sec] {
					t.Errorf("read top %d: exit %d (%s), want failing %v", sec, r.code, r.err, bad)
				}
			}
			out := s.run("rescan")
			if out != "shrunk "+x+"\n" {
				t.Errorf("rescan printed %q, want shrunk %s", out, x)
			}
			if out := s.run("rescan"); out != "" {
				t.Errorf("a second rescan printed %q", out)
			}
			evs := s.loggedEvents()
			for _, dev := range []string{x, "sx", "top"} {
				i := slices.IndexFunc(evs, func(e event) bool { return e.Kind == "media-error" && e.Device == dev })
				if i < 0 {
					t.Errorf("no media-error event for %s: %+v", dev, evs)
					continue
				}
				if dev != x && !mapsEqual(sectors(evs[i].Ranges), want) {
					t.Errorf("media-error on %s: ranges %+v", dev, evs[i].Ranges)
				}
				if evs[i].Cause.Device != x || len(evs[i].Cause.Ranges) != 1 || evs[i].Cause.Ranges[0].Offset != 2048 || evs[i].Cause.Ranges[0].Length != 6144 {
					t.Errorf("media-error on %s: cause %+v", dev, evs[i].Cause)
				}
			}
			if len(evs) != 3 {
				t.Errorf("%d events, want 3: %+v", len(evs), evs)
			}

			// It grows back: the sectors work again (as zeros), and the
			// rescan says so.
			if err := os.Truncate(x, 8192*512); err != nil {
				t.Fatal(err)
			}
			if out := s.run("rescan"); out != "grown "+x+"\n" {
				t.Errorf("rescan after growing printed %q", out)
			}
			evs = s.loggedEvents()
			if n := len(slices.DeleteFunc(evs, func(e event) bool { return e.Kind != "cleared" })); n != 3 {
				t.Errorf("%d cleared events, want 3: %+v", n, s.loggedEvents())
			}
			if out := s.run("badblocks", "top"); out != "" {
				t.Errorf("badblocks top after growing: %q", out)
			}
			if ls := s.run("ls"); strings.Contains(ls, "degraded") {
				t.Errorf("ls after growing:\n%s", ls)
			}
			if r := s.tryRun("read", "top", "--sector", "4096", "--count", "1"); r.code != 0 || r.out != strings.Repeat("\x00", 512) {
				t.Errorf("read top 4096 after growing: exit %d %q", r.code, r.err)
			}
		})
	}
}

func mapsEqual(a, b map[uint64]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestReloadBackToHealth: a device degraded by a lost leaf that a reload
// takes out of its table is healthy again, and its holders (and those of
// the devices above) get restored events for the sectors it failed.
func TestReloadBackToHealth(t *testing.T) {
	s := newQuickSandbox(t)
	a, b := s.file("a.img", 4096*512), s.file("b.img", 4096*512)
	s.run("create", "s", "--table", "0 4096 linear "+a+" 0")
	s.run("create", "top", "--table", "0 4096 linear s 0")
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if out := s.run("rescan"); out != "lost "+a+"\n" {
		t.Fatalf("rescan printed %q", out)
	}
	if h := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "health", "top")); h != "degraded" {
		t.Fatalf("top health %q", h)
	}
	seq := len(s.loggedEvents())
	s.run("load", "s", "--table", "0 4096 linear "+b+" 0")
	s.run("resume", "s")
	evs := s.loggedEvents()[seq:]
	for _, dev := range []string{"s", "top"} {
		i := slices.IndexFunc(evs, func(e event) bool { return e.Device == dev })
		if i < 0 || evs[i].Kind != "restored" || len(evs[i].Ranges) != 1 || evs[i].Ranges[0].Offset != 0 || evs[i].Ranges[0].Length != 4096 {
			t.Errorf("after the reload, %s: %+v; want restored 0+4096", dev, evs)
		}
	}
	if len(evs) != 2 {
		t.Errorf("events after the reload: %+v, want restored on s and top", evs)
	}
	if h := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "health", "top")); h != "ok" {
		t.Errorf("top health after the reload: %q", h)
	}
}

// TestRemoveForceBusy: remove -f of a device in use fails as busy but
// leaves it with an error table of its size, as dmsetup does (lvm2's test
// library relies on it): the one refused command that changes something.
func TestRemoveForceBusy(t *testing.T) {
	s := newQuickSandbox(t)
	a := s.file("a.img", 1024*512)
	s.run("create", "s", "--table", "0 1024 linear "+a+" 0")
	s.run("create", "top", "--table", "0 1024 linear s 0")
	stderr := s.runFail("remove", "-f", "s")
	if !strings.Contains(stderr, "busy") {
		t.Errorf("remove -f s: %q, want busy", stderr)
	}
	if got := s.run("table", "s"); got != "0 1024 error \n" && got != "0 1024 error\n" {
		t.Errorf("table s after remove -f: %q, want an error table", got)
	}
	if r := s.tryRun("read", "top", "--sector", "0", "--count", "1"); r.code != 1 {
		t.Errorf("read top over the error table: %+v", r)
	}
	if ls := s.run("ls"); !strings.Contains(ls, "s\t") || !strings.Contains(ls, "top\t") {
		t.Errorf("ls after remove -f: %q, want both devices", ls)
	}
	// A plain remove of a busy device changes nothing.
	sum := s.dbChecksum()
	s.runFail("remove", "top2")
	s.runFail("remove", "s")
	if s.dbChecksum() != sum {
		t.Errorf("a refused remove changed the database")
	}
}

// TestLeavesReport: `daxstack leaves` names every leaf a table uses, how
// it is reached, whether it is lost or shrunk, and its poison.
func TestLeavesReport(t *testing.T) {
	for _, viaDaemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "embedded", true: "daemon"}[viaDaemon], func(t *testing.T) {
			s := newQuickSandbox(t)
			if out := s.run("leaves"); out != "No leaves found\n" {
				t.Errorf("leaves with no devices: %q", out)
			}
			a, b := s.file("a.img", 2048*512), s.file("b.img", 2048*512)
			if viaDaemon {
				s.startDaemon("--rescan", "1h")
			}
			s.run("create", "s", "--table", fmt.Sprintf("0 2048 linear %s 0\n2048 1024 linear %s 0", a, b))
			s.run("create", "t", "--table", "0 512 linear "+b+" 1024")
			s.run("inject", "s", "--sector", "10", "--count", "3")
			var sa, sb unix.Stat_t
			if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
				t.Fatal("stat")
			}
			rows := s.report("leaf", "leaves")
			if len(rows) != 2 {
				t.Fatalf("leaves: %d rows: %v", len(rows), rows)
			}
			want := map[string]struct {
				ident   string
				poison  float64
				devices []any
			}{
				a: {fmt.Sprintf("file %d:%d", sa.Dev, sa.Ino), 3, []any{"s"}},
				b: {fmt.Sprintf("file %d:%d", sb.Dev, sb.Ino), 0, []any{"s", "t"}},
			}
			for _, r := range rows {
				w, ok := want[r["path"].(string)]
				if !ok {
					t.Errorf("leaves: unexpected row %v", r)
					continue
				}
				if r["kind"] != "file" || r["identity"] != w.ident || r["size"] != 2048.0 || r["lost"] != false || r["poison"] != w.poison || fmt.Sprint(r["devices"]) != fmt.Sprint(w.devices) {
					t.Errorf("leaves row %v, want identity %q poison %v devices %v", r, w.ident, w.poison, w.devices)
				}
				// A file on a file system without DAX is reached through
				// the page cache, and the kernel says so.
				if r["access"] != "page-cache" || r["access_verified"] != true {
					t.Errorf("leaves: %s access %v (verified %v), want page-cache", r["path"], r["access"], r["access_verified"])
				}
			}
			text := s.run("leaves")
			lines := strings.Split(strings.TrimSpace(text), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "Path") || !strings.Contains(text, "page-cache") {
				t.Errorf("leaves text:\n%s", text)
			}
			// a lost, b shrunk.
			if err := os.Remove(a); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(b, 512*512); err != nil {
				t.Fatal(err)
			}
			s.run("rescan")
			for _, r := range s.report("leaf", "leaves") {
				switch r["path"] {
				case a:
					if r["lost"] != true || r["access"] != "none" || r["identity"] != want[a].ident {
						t.Errorf("lost leaf row %v", r)
					}
				case b:
					if r["lost"] != false || r["truncated"] != 1536.0 || r["current_size"] != 512.0 {
						t.Errorf("shrunk leaf row %v", r)
					}
				default:
					t.Errorf("row %v", r)
				}
			}
			if text := s.run("leaves"); !strings.Contains(text, "shrunk:1536") || !strings.Contains(text, " yes ") {
				t.Errorf("leaves text after loss and shrink:\n%s", text)
			}
		})
	}
}

// TestLoopReattachedElsewhere: a loop leaf detached and its backing file
// attached again at another number is the same leaf: rescan restores it
// there (restored events), its tables name the new number from then on,
// and its data is what it was. With the daemon, the uevents of the detach
// and of the new attach trigger the rescans.
func TestLoopReattachedElsewhere(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"embedded", "daemon", "unnoticed"} {
		viaDaemon := mode == "daemon"
		t.Run(mode, func(t *testing.T) {
			s := newQuickSandbox(t)
			l1 := attachLoop(t, s.file("l1.img", 4096*512), "")
			l2 := attachLoop(t, s.file("l2.img", 4096*512), "")
			s.run("create", "s", "--table", fmt.Sprintf("0 8192 striped 2 8 %s 0 %s 0", l1, l2))
			s.run("create", "top", "--table", "0 8192 linear s 0")
			c := s.cmd("write", "top", "--sector", "0")
			c.Stdin = strings.NewReader(strings.Repeat("D", 512))
			if r := s.tryCmd(c); r.code != 0 {
				t.Fatalf("write: %+v", r)
			}
			var w *watcher
			if viaDaemon {
				// A daemon holds its loop leaves open (O_EXCL), so a detach
				// waits for it to let go (the loop driver's autoclear), as
				// one under a kernel dm table does: the surprise removal
				// this test makes needs a daemon that does not hold.
				d := s.startDaemon("--rescan", "1h", "--no-hold")
				w = s.watch("--since", "0", "top") // from the log's start: the watcher may subscribe after the detach
				// The daemon listens before its uevent listener runs: let
				// it start, or the detach's uevent may come before it.
				pollUntil(t, 10*time.Second, "the daemon serving", func() bool { return strings.Contains(daemonLogs(d), "serving on") })
				time.Sleep(300 * time.Millisecond)
			}
			old := devnoOf(t, l1)
			detach(t, l1)
			switch mode {
			case "daemon":
				w.wait(t, 10*time.Second, "lost", func(e event) bool { return e.Kind == "lost" && e.Device == "top" })
			case "embedded":
				if out := s.run("rescan"); out != "lost "+old+"\n" {
					t.Fatalf("rescan after detach: %q", out)
				}
			}
			// Hold the old number with another file, so that the leaf
			// comes back elsewhere. Another process may have taken the
			// number since: it is held either way.
			held := false
			if attachLoop(t, s.file("other.img", 4096*512), l1) != "" {
				held = true
			}
			l3 := attachLoop(t, s.path("l1.img"), "")
			now := devnoOf(t, l3)
			if now == old {
				t.Fatalf("re-attached at the same number %s", now)
			}
			if viaDaemon {
				w.wait(t, 10*time.Second, "restored", func(e event) bool { return e.Kind == "restored" && e.Device == "top" })
			} else if out := s.run("rescan"); out != "restored "+now+"\n" {
				t.Fatalf("rescan after re-attaching at %s: %q", now, out)
			}
			evs := s.loggedEvents()
			if mode == "unnoticed" {
				// Nobody saw it gone: no loss to report, and none restored.
				if len(evs) != 0 {
					t.Errorf("events of a move nobody saw: %+v", evs)
				}
			} else {
				// Events name a block-device leaf by its node after its
				// kernel name (rmapchain.LeafName), tables by its number.
				if !slices.ContainsFunc(evs, func(e event) bool { return e.Kind == "restored" && e.Device == l3 }) {
					t.Errorf("no restored event naming %s: %+v", l3, evs)
				}
				j := slices.IndexFunc(evs, func(e event) bool { return e.Kind == "restored" && e.Device == "top" })
				if j < 0 || len(evs[j].Ranges) != 1 || evs[j].Ranges[0].Stride != 16 || evs[j].Ranges[0].Count != 512 || evs[j].Ranges[0].Length != 8 {
					t.Errorf("restored on top: %+v", evs)
				}
			}
			if got := s.run("table", "s"); got != fmt.Sprintf("0 8192 striped 2 8 %s 0 %s 0\n", now, devnoOf(t, l2)) {
				t.Errorf("table s: %q, want it to name %s", got, now)
			}
			if r := s.tryRun("read", "top", "--sector", "0", "--count", "1"); r.code != 0 || r.out != strings.Repeat("D", 512) {
				t.Errorf("read top 0 after the return: exit %d %q", r.code, r.err)
			}
			if ls := s.run("ls"); strings.Contains(ls, "degraded") {
				t.Errorf("ls: %s", ls)
			}
			if viaDaemon {
				return
			}
			// A later command (a new engine on the database) sees the same.
			if out := s.run("rescan"); out != "" {
				t.Errorf("a second rescan printed %q", out)
			}
			if h := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "health", "top")); h != "ok" {
				t.Errorf("top health %q", h)
			}
			// The old number holds another file: it is not the leaf, and a
			// table can use it beside the leaf that was there.
			rows := s.report("leaf", "leaves")
			if len(rows) != 2 || !slices.ContainsFunc(rows, func(r map[string]any) bool { return r["ref"] == now && r["lost"] == false }) {
				t.Errorf("leaves: %v", rows)
			}
			if !held {
				return
			}
			if err := os.WriteFile(s.path("other.img"), []byte(strings.Repeat("O", 512)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(s.path("other.img"), 4096*512); err != nil {
				t.Fatal(err)
			}
			s.run("create", "o", "--table", "0 4096 linear "+l1+" 0")
			for dev, want := range map[string]string{"o": "O", "top": "D"} {
				if r := s.tryRun("read", dev, "--sector", "0", "--count", "1"); r.code != 0 || r.out != strings.Repeat(want, 512) {
					t.Errorf("read %s 0: exit %d %q %q", dev, r.code, r.err, r.out[:min(8, len(r.out))])
				}
			}
			if got := s.run("table", "o"); got != "0 4096 linear "+old+" 0\n" {
				t.Errorf("table o: %q", got)
			}
			if rows := s.report("leaf", "leaves"); len(rows) != 3 {
				t.Errorf("leaves: %v", rows)
			}
			if out := s.run("rescan"); out != "" {
				t.Errorf("rescan with both: %q", out)
			}
		})
	}
}

// attachLoop attaches file to a free loop device, or to dev (returning ""
// when dev is taken: other processes use loop devices too). At the end of
// the test it detaches the loop devices backed by file, whatever their
// numbers are by then, and never a number that may be someone else's now.
func attachLoop(tb testing.TB, file, dev string) string {
	tb.Helper()
	args := []string{"-f", "--show", file}
	if dev != "" {
		args = []string{dev, file}
	}
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		if dev != "" {
			tb.Logf("losetup %s: %v %s (someone else holds it)", dev, err, out)
			return ""
		}
		tb.Fatalf("losetup %v: %v\n%s", args, err, out)
	}
	if dev == "" {
		dev = strings.TrimSpace(string(out))
	}
	tb.Cleanup(func() {
		out, _ := exec.Command("losetup", "-n", "-O", "NAME", "-j", file).Output()
		for _, d := range strings.Fields(string(out)) {
			exec.Command("losetup", "-d", d).Run()
		}
	})
	return dev
}

func devnoOf(t *testing.T, node string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(node, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

// fakePmem makes a loop device look like pmem7 with a badblocks file in a
// fake sysfs tree under dir (as TestDaemonFakeSysfsBadblocks does); it
// returns the environment that points daxstack at it, the badblocks file
// and the device's node.
func fakePmem(tb testing.TB, dir string, sectors int64) (env []string, badblocks, node string) {
	tb.Helper()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	img := filepath.Join(dir, "nv1.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img, sectors*512); err != nil {
		tb.Fatal(err)
	}
	loop := attachLoop(tb, img, "")
	var st syscall.Stat_t
	if err := syscall.Stat(loop, &st); err != nil {
		tb.Fatal(err)
	}
	ma, mi := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	devno := fmt.Sprintf("%d:%d", ma, mi)
	files := map[string]string{
		"dev/block/" + devno + "/uevent":  fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=pmem7\nDEVTYPE=disk\n", ma, mi),
		"dev/block/" + devno + "/size":    fmt.Sprint(sectors),
		"dev/block/" + devno + "/diskseq": "4242",
		"block/pmem7/badblocks":           "",
	}
	for name, body := range files {
		p := filepath.Join(sys, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.MkdirAll(dev, 0o755); err != nil {
		tb.Fatal(err)
	}
	node = filepath.Join(dev, "pmem7")
	if err := syscall.Mknod(node, syscall.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		tb.Fatal(err)
	}
	return []string{"DAXSTACK_SYSFS=" + sys, "DAXSTACK_DEVDIR=" + dev}, filepath.Join(sys, "block/pmem7/badblocks"), node
}

func appendLine(t testing.TB, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// TestBadblocksWriteSeenSoon: with the daemon's default configuration
// (a rescan every 30 s), a write to a pmem disk's badblocks file, which
// the kernel does not notify, reaches the holders long before the next
// rescan: the watcher re-reads the file every 250 ms. The bound is
// generous; BenchmarkBadblocksWriteLatency measures it. The device is
// created while the daemon runs, so its badblocks file must be watched
// from its creation, not from the next rescan.
func TestBadblocksWriteSeenSoon(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	env, bb, node := fakePmem(t, s.dir, 65536)
	s.env = append(s.env, env...)
	s.startDaemon()
	s.run("create", "p", "--table", "0 4096 linear "+node+" 100")
	w := s.watch("--since", "0", "p")
	time.Sleep(300 * time.Millisecond) // the file's baseline is read
	appendLine(t, bb, "150 2")
	ev := w.wait(t, 10*time.Second, "media-error", func(e event) bool { return e.Kind == "media-error" && e.Device == "p" })
	if len(ev.Ranges) != 1 || ev.Ranges[0].Offset != 50 || ev.Ranges[0].Length != 2 {
		t.Errorf("media-error on p: %+v, want 50+2", ev.Ranges)
	}
}

// BenchmarkBadblocksWriteLatency measures how long the daemon, in its
// default configuration, takes to turn a write to a (fake) pmem
// badblocks file into an event at a watcher of the device above. The
// baseline, in the same run, is one `daxstack badblocks` round trip
// through the same daemon (the least a script polling for the change
// would pay). Reported: ms/seen (mean), ms/seen-max, ms/cli and x-cli.
func BenchmarkBadblocksWriteLatency(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (a loop device and mknod)")
	}
	dir := b.TempDir()
	extra, bb, node := fakePmem(b, dir, 65536)
	env := append(append(os.Environ(),
		"DAXSTACK_DB="+filepath.Join(dir, "daxstack.db"),
		"DAXSTACK_SOCKET="+filepath.Join(dir, "daxstack.sock")), extra...)
	cmd := func(args ...string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.Env, c.Dir = env, dir
		return c
	}
	run := func(args ...string) {
		if out, err := cmd(args...).CombinedOutput(); err != nil {
			b.Fatalf("daxstack %v: %v\n%s", args, err, out)
		}
	}
	srv := cmd("serve")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", filepath.Join(dir, "daxstack.sock")); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			b.Fatal("the daemon does not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	run("create", "p", "--table", "0 4096 linear "+node+" 0")
	wc := cmd("watch", "p")
	out, err := wc.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := wc.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { wc.Process.Kill(); wc.Wait() })
	evs := make(chan event, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				evs <- ev
			}
		}
		close(evs)
	}()
	waitFor := func(kind string) {
		deadline := time.After(60 * time.Second)
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					b.Fatal("watch exited")
				}
				if ev.Kind == kind && ev.Device == "p" {
					return
				}
			case <-deadline:
				b.Fatalf("no %s event", kind)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // the baseline read of the file
	const cliRuns = 10
	t0 := time.Now()
	for range cliRuns {
		run("badblocks", "p")
	}
	cli := time.Since(t0) / cliRuns
	var total, worst time.Duration
	n := 0
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		// Writes at any phase of the watcher's poll, not just after the
		// one that saw the last clear.
		b.StopTimer()
		time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		b.StartTimer()
		t0 := time.Now()
		appendLine(b, bb, fmt.Sprintf("%d 1", n%4000))
		waitFor("media-error")
		d := time.Since(t0)
		total, worst, n = total+d, max(worst, d), n+1
		if err := os.WriteFile(bb, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		waitFor("cleared")
	}
	mean := total / time.Duration(n)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(mean), "ms/seen")
	b.ReportMetric(ms(worst), "ms/seen-max")
	b.ReportMetric(ms(cli), "ms/cli")
	b.ReportMetric(float64(mean)/float64(cli), "x-cli")
}

// TestGrownLeafUsable: a leaf that grew is no shrunk leaf: its new
// sectors can back a new table, and nothing is degraded.
func TestGrownLeafUsable(t *testing.T) {
	s := newQuickSandbox(t)
	a := s.file("a.img", 1024*512)
	s.run("create", "s", "--table", "0 1024 linear "+a+" 0")
	if err := os.Truncate(a, 2048*512); err != nil {
		t.Fatal(err)
	}
	s.run("create", "t", "--table", "0 1024 linear "+a+" 1024")
	if ls := s.run("ls"); strings.Contains(ls, "degraded") {
		t.Errorf("ls: %s", ls)
	}
	if out := s.run("rescan"); out != "" {
		t.Errorf("rescan: %q", out)
	}
	if r := s.tryRun("read", "t", "--sector", "1023", "--count", "1"); r.code != 0 {
		t.Errorf("read t 1023: %+v", r)
	}
}
