package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDaemonParkedReadSurvivesRefusal is the hang with the built
// binary: through the daemon, suspend top, start a read of it, run a
// refused create, resume top: the read ends with top's bytes.
func TestDaemonParkedReadSurvivesRefusal(t *testing.T) {
	t.Parallel()
	s := newQuickSandbox(t)
	leaf := s.file("leaf.img", 1<<20)
	s.run("create", "top", "--table", "0 2048 linear "+leaf+" 0")
	s.startDaemon("--no-uevents", "--rescan", "1h")
	w := s.cmd("write", "top", "--sector", "0")
	w.Stdin = strings.NewReader(strings.Repeat("x", 512))
	if r := s.tryCmd(w); r.code != 0 {
		t.Fatalf("write: %+v", r)
	}
	s.run("suspend", "top")
	read := s.startBg("read", "top", "--sector", "0", "--count", "1")
	time.Sleep(100 * time.Millisecond)
	select {
	case <-read.done:
		t.Fatalf("a read of a suspended device ended: %s", read.stderr())
	default:
	}
	if err := s.runFail("create", "bad", "--table", "0 8 nosuchtarget"); !strings.Contains(err, "unknown target type") {
		t.Fatalf("refused create: %s", err)
	}
	s.run("resume", "top")
	if st := read.wait(20 * time.Second); !st.Success() {
		t.Fatalf("read: %v\n%s", st, read.stderr())
	}
	if out := strings.Join(read.output(), "\n"); out != strings.Repeat("x", 512) {
		t.Fatalf("read returned %q", out)
	}
}

// TestReadErrorsReadTheSame: a read that fails at a bad sector prints the
// same through the daemon as embedded.
func TestReadErrorsReadTheSame(t *testing.T) {
	t.Parallel()
	s := newQuickSandbox(t)
	leaf := s.file("leaf.img", 1<<20)
	s.run("create", "top", "--table", "0 2048 linear "+leaf+" 0\n2048 16 error")
	s.run("inject", "top", "--sector", "100", "--count", "1")
	embedded := []string{s.runFail("read", "top", "--sector", "96", "--count", "8"), s.runFail("read", "top", "--sector", "2050")}
	s.startDaemon("--no-uevents", "--rescan", "1h")
	daemon := []string{s.runFail("read", "top", "--sector", "96", "--count", "8"), s.runFail("read", "top", "--sector", "2050")}
	for i := range embedded {
		if embedded[i] != daemon[i] {
			t.Errorf("embedded:\n%s\nthrough the daemon:\n%s", embedded[i], daemon[i])
		}
	}
	if !strings.Contains(embedded[0], "daxstack: read top: top sector 100: Input/output error (") {
		t.Errorf("embedded read error: %q", embedded[0])
	}
}
