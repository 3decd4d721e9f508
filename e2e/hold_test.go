package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/service"
)

// holdStack is a file leaf a under s0 under top, a free file leaf b, and a
// daemon: the setting of the holder tests.
type holdStack struct {
	s    *sandbox
	d    *daemon
	a, b string
}

func newHoldStack(t *testing.T, daemonArgs ...string) *holdStack {
	s := newQuickSandbox(t)
	h := &holdStack{s: s, a: s.file("a.img", 8<<20), b: s.file("b.img", 8<<20)}
	s.run("create", "s0", "--table", "0 16384 linear "+h.a+" 0")
	s.run("create", "top", "--table", "0 16000 linear s0 8")
	h.d = s.startDaemon(append([]string{"--no-uevents", "--rescan", "1h"}, daemonArgs...)...)
	return h
}

// hold starts `daxstack hold` and waits until info shows its claim.
func (h *holdStack) hold(dev string, args ...string) *bgProc {
	h.s.t.Helper()
	p := h.s.startBg(append([]string{"hold", dev}, args...)...)
	want := fmt.Sprintf("hold:%d", p.pid())
	pollUntil(h.s.t, 10*time.Second, dev+" held by "+want, func() bool {
		select {
		case <-p.done:
			h.s.t.Fatalf("hold %s exited: %v\n%s", dev, p.state, p.stderr())
		default:
		}
		return h.s.holderOf(dev) == want
	})
	return p
}

// TestHoldExclusive: a hold is exclusive and refusals name the holder; a
// device a table uses cannot be held, and a held leaf cannot be used by a
// new table; a claim ends when its process is killed, and the device can
// be claimed again.
func TestHoldExclusive(t *testing.T) {
	t.Parallel()
	h := newHoldStack(t)
	s := h.s
	h1 := h.hold("top")
	holder1 := fmt.Sprintf("hold:%d", h1.pid())

	msg := s.runFail("hold", "top")
	if !strings.Contains(msg, "top is held by "+holder1) {
		t.Errorf("a second hold of top says:\n%s\nwant it to name %s", msg, holder1)
	}
	// A claim straight through the socket, from a program of the holder's
	// own, is refused the same way.
	cl, err := service.Dial(s.path("daxstack.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.Claim(context.Background(), control.ClaimReq{Device: "top", Holder: "other"})
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), holder1) {
		t.Errorf("claim of a held device: %v, want EBUSY naming %s", err, holder1)
	}

	if msg := s.runFail("hold", "s0"); !strings.Contains(msg, "s0 is used by mapped device top") {
		t.Errorf("hold of s0 (top uses it) says:\n%s", msg)
	}
	if msg := s.runFail("hold", h.a); !strings.Contains(msg, "is used by mapped device s0") {
		t.Errorf("hold of leaf a (s0 uses it) says:\n%s", msg)
	}

	// A leaf held by a program (service.Hold returns once the claim is
	// made; info shows holders of mapped devices only).
	hb, err := service.Hold(s.path("daxstack.sock"), 0, []string{h.b}, "leafholder")
	if err != nil {
		t.Fatal(err)
	}
	msg = s.runFail("create", "t2", "--table", "0 100 linear "+h.b+" 0")
	if !strings.Contains(msg, "is held by leafholder") {
		t.Errorf("a table over a held leaf: \n%s\nwant it refused naming leafholder", msg)
	}
	if out := s.run("ls"); strings.Contains(out, "t2") {
		t.Errorf("refused create left t2 behind:\n%s", out)
	}
	hb.Close()
	pollUntil(t, 5*time.Second, "a table over b once its holder is gone", func() bool {
		return s.tryRun("create", "t2", "--table", "0 100 linear "+h.b+" 0").code == 0
	})

	// SIGKILL: no release from the holder; the daemon sees its
	// connections close.
	h1.signal(syscall.SIGKILL)
	pollUntil(t, 5*time.Second, "the claim on top ends with its killed holder", func() bool { return s.holderOf("top") == "" })
	h3 := h.hold("top")
	if got, want := s.holderOf("top"), fmt.Sprintf("hold:%d", h3.pid()); got != want {
		t.Errorf("holder after the kill: %q, want %q", got, want)
	}

	// A clean exit releases at once.
	h3.signal(syscall.SIGTERM)
	if st := h3.wait(10 * time.Second); !st.Success() {
		t.Errorf("hold exited %v after SIGTERM:\n%s", st, h3.stderr())
	}
	if got := s.holderOf("top"); got != "" {
		t.Errorf("top still held by %q after its holder exited", got)
	}
}

// TestHoldExec: `hold --exec CMD` runs CMD once per event with the event's
// JSON on stdin and DAXSTACK_* in its environment.
func TestHoldExec(t *testing.T) {
	t.Parallel()
	h := newHoldStack(t)
	s := h.s
	got := s.path("events.jsonl")
	envs := s.path("env.txt")
	h.hold("top", "--exec", fmt.Sprintf(`cat >> %s; echo "$DAXSTACK_DEVICE $DAXSTACK_EVENT $DAXSTACK_SEQ" >> %s`, got, envs))
	for i := range 3 {
		s.run("inject", "top", "--sector", fmt.Sprint(100*i), "--count", fmt.Sprint(i+1))
	}
	logged := s.loggedEvents("top")
	if len(logged) != 3 {
		t.Fatalf("the log has %d events for top, want 3: %+v", len(logged), logged)
	}
	pollUntil(t, 5*time.Second, "three events handed to the command", func() bool { return len(readEventFile(t, got)) >= 3 })
	time.Sleep(200 * time.Millisecond) // a fourth would be a duplicate
	evs := readEventFile(t, got)
	if len(evs) != 3 {
		t.Fatalf("the command ran %d times, want 3: %+v", len(evs), evs)
	}
	b, _ := os.ReadFile(envs)
	envLines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, ev := range evs {
		want := logged[i]
		if ev.Seq != want.Seq || ev.Kind != "media-error" || ev.Device != "top" || len(ev.Ranges) != 1 ||
			ev.Ranges[0].Offset != uint64(100*i) || ev.Ranges[0].Length != uint64(i+1) {
			t.Errorf("event %d on stdin: %+v; the log has %+v; injected top %d+%d", i, ev, want, 100*i, i+1)
		}
		if i < len(envLines) && envLines[i] != fmt.Sprintf("top media-error %d", want.Seq) {
			t.Errorf("environment of run %d: %q", i, envLines[i])
		}
	}
}

// TestHoldPreRemove: `offline` delivers pre-remove to top's holder, and
// waits for the holder to have handled it, before the leaf is lost; a
// holder of an unrelated device is not waited for.
func TestHoldPreRemove(t *testing.T) {
	t.Parallel()
	h := newHoldStack(t)
	s := h.s
	c := s.file("c.img", 1<<20)
	s.run("create", "other", "--table", "0 2048 linear "+c+" 0")
	h.hold("other") // subscribed, never sees an event of a's

	got := s.path("events.jsonl")
	const handling = 700 * time.Millisecond
	h.hold("top", "--exec", fmt.Sprintf("cat >> %s; sleep %.1f", got, handling.Seconds()))
	start := time.Now()
	s.run("offline", h.a)
	took := time.Since(start)
	atReturn := readEventFile(t, got)
	if len(atReturn) == 0 || atReturn[0].Kind != "pre-remove" || atReturn[0].Device != "top" {
		t.Fatalf("when offline returned the holder had handled %+v, want top's pre-remove first", atReturn)
	}
	if took < handling {
		t.Errorf("offline returned after %v, before the holder could have handled pre-remove (%v)", took, handling)
	}
	if took > 5*time.Second {
		t.Errorf("offline took %v: was it waiting for other's holder too?", took)
	}
	pollUntil(t, 5*time.Second, "lost reaches the holder", func() bool { return len(readEventFile(t, got)) >= 2 })
	evs := readEventFile(t, got)
	if evs[1].Kind != "lost" || evs[1].Device != "top" || evs[1].Seq <= evs[0].Seq {
		t.Fatalf("after pre-remove the holder got %+v, want top's lost", evs[1:])
	}
	// The pre-remove covers what the loss then takes: all of top.
	if n := len(sectors(evs[0].Ranges)); n != 16000 || len(sectors(evs[1].Ranges)) != 16000 {
		t.Errorf("pre-remove covers %d sectors, lost %d; top has 16000", n, len(sectors(evs[1].Ranges)))
	}
	if out := s.run("info", "-c", "--noheadings", "-o", "health", "top"); strings.TrimSpace(out) != "degraded" {
		t.Errorf("top after offline: health %q", out)
	}
}

// TestHoldPreRemoveAckTimeout: a holder that stops reading (SIGSTOP)
// delays offline by --ack-timeout, no more; once continued it receives
// pre-remove, then lost.
func TestHoldPreRemoveAckTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 1500 * time.Millisecond
	h := newHoldStack(t, "--ack-timeout", timeout.String())
	s := h.s
	holder := h.hold("top")
	holder.signal(syscall.SIGSTOP)
	start := time.Now()
	s.run("offline", h.a)
	took := time.Since(start)
	if took < timeout || took > timeout+3*time.Second {
		t.Errorf("offline with a stopped holder took %v, want about the ack timeout %v", took, timeout)
	}
	if logs := daemonLogs(h.d); !strings.Contains(logs, "no acknowledgement within "+timeout.String()) {
		t.Errorf("the daemon did not log the timeout:\n%s", logs)
	}
	holder.signal(syscall.SIGCONT)
	lost := holder.waitEvent(5*time.Second, "lost", func(e event) bool { return e.Kind == "lost" })
	evs := holder.events()
	if len(evs) != 2 || evs[0].Kind != "pre-remove" || evs[0].Device != "top" || evs[1].Seq != lost.Seq || lost.Device != "top" {
		t.Fatalf("the continued holder got %+v, want top's pre-remove then lost", evs)
	}
}

var _ = json.Marshal
