package e2e

// Helpers for the tests of holders, access, resumption and overruns:
// long-running daxstack processes whose output is collected line by line,
// commands expected to fail, commands run as another user.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newQuickSandbox is newSandbox whose race-built binaries exit at once:
// the race runtime otherwise sleeps a second at every exit
// (GORACE=atexit_sleep_ms), which is most of a command's time here.
func newQuickSandbox(t *testing.T) *sandbox {
	t.Helper()
	s := newSandbox(t)
	gorace := "atexit_sleep_ms=0"
	if g := os.Getenv("GORACE"); g != "" {
		gorace = g + " " + gorace
	}
	s.env = append(s.env, "GORACE="+gorace)
	return s
}

// runResult is how a finished daxstack command went.
type runResult struct {
	out, err string
	code     int // exit status; -1 when it did not exit normally
}

// try runs daxstack and returns how it went, without failing the test.
func (s *sandbox) tryRun(args ...string) runResult {
	s.t.Helper()
	return s.tryCmd(s.cmd(args...))
}

func (s *sandbox) tryCmd(c *exec.Cmd) runResult {
	s.t.Helper()
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := runResult{out: out.String(), err: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		s.t.Fatalf("daxstack %v: %v", c.Args[1:], err)
	}
	return r
}

// runFail runs daxstack, expects exit status 1 and returns its stderr.
func (s *sandbox) runFail(args ...string) string {
	s.t.Helper()
	r := s.tryRun(args...)
	if r.code != 1 {
		s.t.Fatalf("daxstack %s: exit status %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.err
}

// dbChecksum returns the checksum of the database file.
func (s *sandbox) dbChecksum() [32]byte {
	s.t.Helper()
	b, err := os.ReadFile(s.path("daxstack.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// holderOf returns the holder `info` shows for a device ("" for none).
func (s *sandbox) holderOf(dev string) string {
	s.t.Helper()
	out := strings.TrimSpace(s.run("info", "-c", "--noheadings", "--separator", "|", "-o", "holder", dev))
	return out
}

// bgProc is a long-running daxstack process (hold, watch) whose stdout is
// collected line by line.
type bgProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	errb  bytes.Buffer
	seen  chan struct{}
	done  chan struct{}
	state *os.ProcessState
}

// start starts daxstack and collects its output; the process is killed
// when the test ends.
func (s *sandbox) startBg(args ...string) *bgProc {
	s.t.Helper()
	p := &bgProc{t: s.t, cmd: s.cmd(args...), seen: make(chan struct{}, 1), done: make(chan struct{})}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	p.cmd.Stderr = &lockedWriter{w: &p.errb}
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		p.cmd.Wait()
		p.mu.Lock()
		p.state = p.cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *bgProc) pid() int { return p.cmd.Process.Pid }

func (p *bgProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %d: %v", sig, p.pid(), err)
	}
}

// wait waits for the process to exit (within d) and returns its status.
func (p *bgProc) wait(d time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("daxstack %v did not exit within %v; stderr:\n%s", p.cmd.Args[1:], d, p.stderr())
	}
	return p.state
}

func (p *bgProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.String()
}

func (p *bgProc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// events returns the output lines decoded as events (others are skipped).
func (p *bgProc) events() []event {
	var out []event
	for _, l := range p.output() {
		var ev event
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Seq > 0 {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent returns the first event matching pred, within d.
func (p *bgProc) waitEvent(d time.Duration, what string, pred func(event) bool) event {
	p.t.Helper()
	deadline := time.After(d)
	for {
		for _, ev := range p.events() {
			if pred(ev) {
				return ev
			}
		}
		select {
		case <-p.seen:
		case <-p.done:
			for _, ev := range p.events() {
				if pred(ev) {
					return ev
				}
			}
			p.t.Fatalf("daxstack %v exited without a %s event; stderr:\n%s", p.cmd.Args[1:], what, p.stderr())
		case <-deadline:
			p.t.Fatalf("no %s event within %v; got %+v; stderr:\n%s", what, d, p.events(), p.stderr())
		}
	}
}

// pollUntil polls cond every 20 ms until it holds, failing after d.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readEventFile decodes a file of event lines (as `hold --exec 'cat >> F'`
// writes it); a missing file has none.
func readEventFile(t *testing.T, path string) []event {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var ev event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%s: line %q is not an event: %v", filepath.Base(path), l, err)
		}
		out = append(out, ev)
	}
	return out
}

// loggedEvents returns the event log as `watch --no-follow` prints it.
func (s *sandbox) loggedEvents(args ...string) []event {
	s.t.Helper()
	var out []event
	for _, l := range strings.Split(strings.TrimSpace(s.run(append([]string{"watch", "--no-follow"}, args...)...)), "\n") {
		if l == "" {
			continue
		}
		var ev event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			s.t.Fatalf("watch printed %q: %v", l, err)
		}
		out = append(out, ev)
	}
	return out
}

// daemonLogs returns what the daemon logged so far.
func daemonLogs(d *daemon) string {
	lw := d.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return d.logs.String()
}
