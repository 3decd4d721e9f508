package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/service"
)

// stackOf builds s0 over leaf a, top over s0, and other over leaf c.
func stackOf(t *testing.T, d *daemon, c *service.Client) (a string) {
	t.Helper()
	a = d.leaf(t, "a.img", 4096)
	cl := d.leaf(t, "c.img", 2048)
	create(t, c, "s0", "0 4096 linear "+a+" 0")
	create(t, c, "top", "0 4000 linear s0 8")
	create(t, c, "other", "0 2048 linear "+cl+" 0")
	return a
}

// next returns the next event of sub within d.
func next(t *testing.T, sub *service.Subscription, d time.Duration) rmapchain.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("stream ended: %v", sub.Err())
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

// asyncCall runs a call in the background and reports when it returned.
func asyncCall(c *service.Client, method string, req any) <-chan error {
	done := make(chan error, 1)
	go func() {
		p, _ := json.Marshal(req)
		_, err := c.Call(context.Background(), method, p)
		done <- err
	}()
	return done
}

// TestPreRemoveWaitsForItsHolder: a pre-remove returns only once the
// holder of each device it concerns has acknowledged that device's event;
// holders of other devices, and watchers, are not waited for.
func TestPreRemoveWaitsForItsHolder(t *testing.T) {
	d := startDaemon(t, "", service.Config{AckTimeout: time.Minute})
	c := d.client(t)
	a := stackOf(t, d, c)
	since := lastSeq(t, c)
	top, err := service.Hold(d.sock, since, []string{"/dev/mapper/top"}, "topholder")
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	if got := top.Devices(); len(got) != 1 || got[0] != "top" {
		t.Fatalf("Hold names the device %v, want [top] as events name it", got)
	}
	other, err := service.Hold(d.sock, since, []string{"other"}, "otherholder")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	watcher, err := service.Subscribe(d.sock, since, nil) // sees everything, acknowledges nothing
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()

	done := asyncCall(d.client(t), "pre-remove", control.NameReq{Name: a})
	ev := next(t, top, 5*time.Second)
	if ev.Kind != rmapchain.PreRemove || ev.Device != "top" {
		t.Fatalf("the holder of top got %+v first", ev)
	}
	select {
	case err := <-done:
		t.Fatalf("pre-remove returned (%v) before top's holder acknowledged", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := top.Ack(ev.Seq - 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("pre-remove returned (%v) on an acknowledgement of an earlier event", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := top.Ack(ev.Seq); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pre-remove still waiting after the holder acknowledged")
	}
}

// TestPreRemoveAckTimeout: a holder that never acknowledges holds a
// pre-remove up for AckTimeout, then the removal goes on.
func TestPreRemoveAckTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	d := startDaemon(t, "", service.Config{AckTimeout: timeout})
	c := d.client(t)
	a := stackOf(t, d, c)
	top, err := service.Hold(d.sock, lastSeq(t, c), []string{"top"}, "deaf")
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	start := time.Now()
	call(t, c, "pre-remove", control.NameReq{Name: a}, nil)
	if took := time.Since(start); took < timeout || took > timeout+3*time.Second {
		t.Errorf("pre-remove with a deaf holder took %v, want about %v", took, timeout)
	}
}

// TestHoldRefusals: a second holder is refused naming the first, a device
// a table uses cannot be held, and a refused Hold leaves no claim behind.
func TestHoldRefusals(t *testing.T) {
	d := startDaemon(t, "", service.Config{})
	c := d.client(t)
	a := stackOf(t, d, c)
	first, err := service.Hold(d.sock, 0, []string{"top"}, "first")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for _, tc := range []struct {
		name    string
		devices []string
		want    string
	}{
		{"held", []string{"top"}, "top is held by first"},
		{"used by a table", []string{"s0"}, "s0 is used by mapped device top"},
		{"leaf used by a table", []string{a}, "is used by mapped device s0"},
		{"second of two refused", []string{"other", "top"}, "top is held by first"},
		{"no device", nil, "must name the devices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := service.Hold(d.sock, 0, tc.devices, "second")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Hold %v: %v, want %q", tc.devices, err, tc.want)
			}
			if errors.Is(err, service.ErrNoDaemon) {
				t.Fatalf("a refusal reads as no daemon: %v", err)
			}
		})
	}
	var info control.DeviceInfo
	call(t, c, "info", control.NameReq{Name: "other"}, &info)
	if info.Holder != "" {
		t.Errorf("a refused Hold left other held by %q", info.Holder)
	}
	_, err = c.Claim(context.Background(), control.ClaimReq{Device: "top", Holder: "x"})
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("claim of a held device: %v, want EBUSY", err)
	}
}

// TestClaimOutlivesDaemon: a claim ends with its connection, not with the
// daemon: after a restart the holder (still running: this process) keeps
// the device, claims it again on a new stream, and loses it when that
// stream closes.
func TestClaimOutlivesDaemon(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, service.Config{})
	c := d.client(t)
	stackOf(t, d, c)
	h, err := service.Hold(d.sock, 0, []string{"top"}, "keeper")
	if err != nil {
		t.Fatal(err)
	}
	d.stop()
	if _, ok := <-h.Events(); ok {
		t.Fatal("the stream did not end with the daemon")
	}
	h.Close()

	d = startDaemon(t, dir, service.Config{})
	c = d.client(t)
	holder := func() string {
		var info control.DeviceInfo
		call(t, c, "info", control.NameReq{Name: "top"}, &info)
		return info.Holder
	}
	if got := holder(); got != "keeper" {
		t.Fatalf("after the restart top is held by %q, want keeper", got)
	}
	if _, err := service.Hold(d.sock, 0, []string{"top"}, "intruder"); err == nil {
		t.Fatal("another holder took top while its holder lives")
	}
	h, err = service.Hold(d.sock, 0, []string{"top"}, "keeper")
	if err != nil {
		t.Fatalf("the holder cannot claim its device again: %v", err)
	}
	h.Close()
	deadline := time.Now().Add(5 * time.Second)
	for holder() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("top still held by %q after the stream closed", holder())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPreRemoveSplitHolder: a program that claims on one connection and
// streams on another is waited for on its stream.
func TestPreRemoveSplitHolder(t *testing.T) {
	d := startDaemon(t, "", service.Config{AckTimeout: time.Minute})
	c := d.client(t)
	a := stackOf(t, d, c)
	holder := d.client(t)
	call(t, holder, "claim", control.ClaimReq{Device: "top", Holder: "split"}, nil)
	sub, err := service.Subscribe(d.sock, lastSeq(t, c), []string{"top"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	done := asyncCall(c, "pre-remove", control.NameReq{Name: a})
	ev := next(t, sub, 5*time.Second)
	select {
	case err := <-done:
		t.Fatalf("pre-remove returned (%v) before the holder's stream acknowledged %+v", err, ev)
	case <-time.After(300 * time.Millisecond):
	}
	sub.Ack(ev.Seq)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pre-remove still waiting after the holder's stream acknowledged")
	}
}
