package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func init() {
	// A binary built with -race sleeps a second before exiting (the race
	// runtime's atexit_sleep_ms), so every daxstack process of a -race run
	// takes at least a second, and the crash and concurrency tests run
	// thousands. Ten milliseconds still lets a report from another
	// goroutine be printed, and a race found still fails the command (exit
	// status 66). Child processes, testscript's included, inherit it.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=10")
	}
}

// kres is how one daxstack process ended.
type kres struct {
	stdout, stderr string
	code           int  // exit status; -1 when ended by a signal
	killed         bool // ended by SIGKILL
	dur            time.Duration
}

// runKill runs daxstack and, when after >= 0, sends it SIGKILL that long
// after it started if it is still running. It fails the test only if the
// process cannot be started.
func (s *sandbox) runKill(after time.Duration, args ...string) kres {
	s.t.Helper()
	return s.runKillIn(after, "", args...)
}

// runKillIn is runKill with stdin as the command's standard input.
func (s *sandbox) runKillIn(after time.Duration, stdin string, args ...string) kres {
	s.t.Helper()
	var out, errb bytes.Buffer
	c := s.cmd(args...)
	c.Stdout, c.Stderr = &out, &errb
	c.Stdin = strings.NewReader(stdin)
	start := time.Now()
	if err := c.Start(); err != nil {
		s.t.Fatalf("daxstack %s: %v", strings.Join(args, " "), err)
	}
	var timer *time.Timer
	if after >= 0 {
		timer = time.AfterFunc(after, func() { c.Process.Kill() })
	}
	err := c.Wait()
	if timer != nil {
		timer.Stop()
	}
	r := kres{stdout: out.String(), stderr: errb.String(), dur: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
	default:
		s.t.Fatalf("daxstack %s: %v", strings.Join(args, " "), err)
	}
	return r
}
