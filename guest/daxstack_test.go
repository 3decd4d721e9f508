//go:build guest

package guest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sandbox is a database and a socket of daxstack's in a temporary
// directory: the real binary, driven as a script would.
type sandbox struct {
	t   testing.TB
	dir string
	env []string
}

func newSandbox(t testing.TB) *sandbox {
	dir := t.TempDir()
	return &sandbox{t: t, dir: dir, env: append(os.Environ(),
		"DAXSTACK_DB="+filepath.Join(dir, "daxstack.db"),
		"DAXSTACK_SOCKET="+filepath.Join(dir, "daxstack.sock"),
		"DAXSTACK_LOCK_TIMEOUT=60s",
	)}
}

func (s *sandbox) db() string { return filepath.Join(s.dir, "daxstack.db") }

func (s *sandbox) cmd(stdin []byte, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env, c.Dir = s.env, s.dir
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	return c
}

// result is one finished daxstack command.
type result struct {
	stdout, stderr string
	err            error // nil when it exited 0
}

func (r result) String() string {
	return fmt.Sprintf("exit: %v\nstdout: %q\nstderr: %q", r.err, r.stdout, r.stderr)
}

// try runs daxstack with stdin (nil for none).
func (s *sandbox) try(stdin []byte, args ...string) result {
	var out, errb bytes.Buffer
	c := s.cmd(stdin, args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return result{out.String(), errb.String(), err}
}

// run is try that fails t unless daxstack exits 0; it returns stdout.
func (s *sandbox) run(stdin []byte, args ...string) string {
	s.t.Helper()
	r := s.try(stdin, args...)
	if r.err != nil {
		s.t.Fatalf("daxstack %s:\n%v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// create makes a device with a table given on stdin, as
// `dmsetup create NAME` reads one.
func (s *sandbox) create(name, table string) {
	s.t.Helper()
	s.run([]byte(table), "create", name)
}

// hasVerb reports whether the binary has a verb: an unknown verb exits 1,
// a known one's --help exits 0.
func (s *sandbox) hasVerb(verb string) bool {
	s.t.Helper()
	return s.try(nil, verb, "--help").err == nil
}

// report runs a verb with --reportformat json and returns the elements of
// the report's one kind.
func (s *sandbox) report(kind string, args ...string) []map[string]any {
	s.t.Helper()
	out := s.run(nil, append(args, "--reportformat", "json")...)
	var rep struct {
		Report []map[string][]map[string]any `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		s.t.Fatalf("daxstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var rows []map[string]any
	for _, r := range rep.Report {
		rows = append(rows, r[kind]...)
	}
	return rows
}

// badblocks is `daxstack badblocks DEV` as "start count" lines.
func (s *sandbox) badblocks(dev string) string {
	s.t.Helper()
	return strings.TrimSpace(s.run(nil, "badblocks", dev))
}

// daemon is a running `daxstack serve`.
type daemon struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// serve starts the daemon with args and waits until its socket answers;
// it is stopped when the test ends.
func (s *sandbox) serve(args ...string) *daemon {
	s.t.Helper()
	d := &daemon{logs: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = s.cmd(nil, append([]string{"serve"}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", filepath.Join(s.dir, "daxstack.sock")); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-d.done:
			s.t.Fatalf("daemon exited: %v\n%s", err, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("daemon did not listen within 30s\n%s", d.logs.String())
		}
	}
	s.t.Cleanup(func() {
		d.stop()
		if s.t.Failed() {
			s.t.Logf("daemon log:\n%s", d.logs.String())
		}
	})
	return d
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) stop() {
	select {
	case err := <-d.done:
		d.done <- err
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// event is one line of `daxstack watch`.
type event struct {
	Seq    uint64   `json:"seq"`
	Kind   string   `json:"kind"`
	Device string   `json:"device"`
	Ranges []erange `json:"ranges"`
	Cause  struct {
		Device string   `json:"device"`
		Ranges []erange `json:"ranges"`
	} `json:"cause"`
}

// erange is an event's range: length sectors at offset, or with stride
// and count, count of them every stride sectors.
type erange struct {
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
	Stride uint64 `json:"stride"`
	Count  uint64 `json:"count"`
}

// runs expands ranges into sorted, merged "start count" runs, the way
// badblocks prints them, so an event compares with the independent
// arithmetic of a test.
func runs(rs []erange) string {
	var secs []uint64
	for _, r := range rs {
		for i := uint64(0); i < max(r.Count, 1); i++ {
			for s := uint64(0); s < r.Length; s++ {
				secs = append(secs, r.Offset+i*r.Stride+s)
			}
		}
	}
	return sectorRuns(secs)
}

// sectorRuns prints a set of sectors as sorted "start count" lines of
// consecutive sectors.
func sectorRuns(secs []uint64) string {
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	var out []string
	for i := 0; i < len(secs); {
		j := i + 1
		for j < len(secs) && secs[j] <= secs[j-1]+1 {
			j++
		}
		out = append(out, fmt.Sprintf("%d %d", secs[i], secs[j-1]-secs[i]+1))
		i = j
	}
	return strings.Join(out, "\n")
}

// watcher is a running `daxstack watch` whose events are collected.
type watcher struct {
	mu     sync.Mutex
	events []event
	seen   chan struct{}
	errb   syncBuffer
}

func (s *sandbox) watch(args ...string) *watcher {
	s.t.Helper()
	w := &watcher{seen: make(chan struct{}, 1)}
	c := s.cmd(nil, append([]string{"watch"}, args...)...)
	out, err := c.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	c.Stderr = &w.errb
	if err := c.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				w.errb.Write(fmt.Appendf(nil, "unparsed watch line %q: %v\n", sc.Text(), err))
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
			select {
			case w.seen <- struct{}{}:
			default:
			}
		}
	}()
	s.t.Cleanup(func() {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	})
	return w
}

// wait returns the first event of kind on device, within d.
func (w *watcher) wait(t testing.TB, d time.Duration, kind, device string) event {
	t.Helper()
	return w.waitFor(t, d, kind+" on "+device, func(e event) bool { return e.Kind == kind && e.Device == device })
}

// waitFor returns the first event matching pred, within d.
func (w *watcher) waitFor(t testing.TB, d time.Duration, what string, pred func(event) bool) event {
	t.Helper()
	ev, ok := w.poll(d, pred)
	if !ok {
		t.Fatalf("no %s event within %v; events: %+v\nwatch stderr: %s", what, d, w.all(), w.errb.String())
	}
	return ev
}

// poll returns the first event matching pred, waiting up to d for one.
func (w *watcher) poll(d time.Duration, pred func(event) bool) (event, bool) {
	deadline := time.After(d)
	for {
		if ev, ok := w.find(pred); ok {
			return ev, true
		}
		select {
		case <-w.seen:
		case <-deadline:
			return event{}, false
		}
	}
}

func (w *watcher) find(pred func(event) bool) (event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if pred(ev) {
			return ev, true
		}
	}
	return event{}, false
}

// events returns every event logged so far (watch --no-follow --since 0).
func (s *sandbox) events() []event {
	s.t.Helper()
	var out []event
	for _, line := range strings.Split(strings.TrimSpace(s.run(nil, "watch", "--no-follow", "--since", "0")), "\n") {
		if line == "" {
			continue
		}
		var ev event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			s.t.Fatalf("watch line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

func (w *watcher) all() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

// ioErr matches EIO's words in what a failed command prints.
var ioErr = regexp.MustCompile(`(?i)input/output error`)

// anyReport runs a verb with --reportformat json and returns the elements
// of every kind of its report (for reports whose kind name is not settled
// yet).
func (s *sandbox) anyReport(args ...string) []map[string]any {
	s.t.Helper()
	out := s.run(nil, append(args, "--reportformat", "json")...)
	var rep struct {
		Report []map[string][]map[string]any `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		s.t.Fatalf("daxstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var rows []map[string]any
	for _, r := range rep.Report {
		for _, kind := range r {
			rows = append(rows, kind...)
		}
	}
	return rows
}

// findRow returns the first report element with a string field equal to
// path, or to the major:minor of the device node at path.
func findRow(rows []map[string]any, path string) map[string]any {
	keys := []string{path}
	var st unix.Stat_t
	if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
		keys = append(keys, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	}
	for _, row := range rows {
		for _, v := range row {
			for _, k := range keys {
				if v == k {
					return row
				}
			}
		}
	}
	return nil
}
