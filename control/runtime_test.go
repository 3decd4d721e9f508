package control_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// daemonEngine opens a long-lived engine on the fixture, as `daxstack
// serve` has: I/O to a suspended device waits for the resume.
func (f *fixture) daemonEngine() *control.Engine {
	f.t.Helper()
	e, err := control.Open(control.Config{DB: f.db, LockTimeout: 2 * time.Second, Daemon: true,
		SysfsRoot: filepath.Join(f.dir, "nosys"), Now: func() time.Time { return f.now }})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { e.Close() })
	return e
}

var bg = context.Background()

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// refusedCreate is a command that is refused after it has changed the
// pool (a device created, the table refused).
func refusedCreate(t *testing.T, e control.API) {
	t.Helper()
	text := "0 8 nosuchtarget"
	if err := e.Create(bg, control.CreateReq{Name: "bad", Table: &text}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("create with a bad table: %v", err)
	}
}

// TestParkedReadSurvivesRefusal is the hang: suspend top, start a
// read of it, run a refused command, resume top: the read, parked on the
// suspended device, goes on.
func TestParkedReadSurvivesRefusal(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	e := f.daemonEngine()
	ok(t, e.Suspend(bg, control.SuspendReq{Name: "top"}))
	h, err := e.Open(bg, control.OpenReq{Name: "top"})
	ok(t, err)
	defer h.Close()
	read := make(chan error, 1)
	go func() {
		_, err := h.ReadAt(make([]byte, 4096), 0)
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("read of a suspended device returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	refusedCreate(t, e)
	ok(t, e.Resume(bg, control.SuspendReq{Name: "top"}))
	select {
	case err := <-read:
		ok(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the parked read never returned")
	}
}

// TestRefusalKeepsRunTimeState: a refused command leaves a stripe's error
// count (D in status), an open handle (Open count, busy) and a target's
// state as they were; it never rebuilds from the store.
func TestRefusalKeepsRunTimeState(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	must[control.Empty](f, "create", control.CreateReq{Name: "m", Table: strPtr("0 64 memo " + f.leaves[2] + " 1024")})
	e := f.daemonEngine()
	// A failed read through s0 marks its second stripe D.
	_, err := e.Inject(bg, control.RangeReq{Name: f.leaves[1], Sector: 300, Count: 1})
	ok(t, err)
	h, err := e.Open(bg, control.OpenReq{Name: "s0"})
	ok(t, err)
	defer h.Close()
	if _, err := h.ReadAt(make([]byte, 4096), 348*512); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read over poison: %v", err)
	}
	status := func() string {
		t.Helper()
		s, err := e.Status(bg, control.TableReq{Name: "s0"})
		ok(t, err)
		return s.Segments[0].Params
	}
	if got := status(); !strings.HasSuffix(got, " 1 AD") {
		t.Fatalf("s0 status after the failed read: %q", got)
	}
	_, err = e.Message(bg, control.MessageReq{Name: "m", Args: []string{"set", "kept"}})
	ok(t, err)
	refusedCreate(t, e)
	if err := e.Rename(bg, control.RenameReq{Name: "m", New: "top"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("rename onto an existing name: %v", err)
	}
	if got := status(); !strings.HasSuffix(got, " 1 AD") {
		t.Fatalf("s0 status after refusals: %q (the pool was rebuilt)", got)
	}
	if st, err := e.Status(bg, control.TableReq{Name: "m"}); err != nil || st.Segments[0].Params != "kept" {
		t.Fatalf("memo status after refusals: %+v, %v", st, err)
	}
	info, err := e.Info(bg, control.NameReq{Name: "s0"})
	ok(t, err)
	if info.Open != 2 { // top's table and the handle
		t.Fatalf("s0 open count %d, want 2", info.Open)
	}
	if _, err := h.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("the handle after refusals: %v", err)
	}
}

// TestWritesCommitOnlyChanges: writes that clear no poison leave the
// database file byte-identical (no commit at all); a write that clears
// poison commits exactly once, with its cleared events.
func TestWritesCommitOnlyChanges(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	must[control.InjectResp](f, "inject", control.RangeReq{Name: "top", Sector: 324, Count: 4})
	e := f.daemonEngine()
	var logged [][]rmapchain.Event
	e.Listen(func(evs []rmapchain.Event) { logged = append(logged, evs) })
	h, err := e.Open(bg, control.OpenReq{Name: "top", Write: true})
	ok(t, err)
	defer h.Close()
	before := f.sum()
	commits := e.Stats().Commits
	buf := bytes.Repeat([]byte{7}, 4096)
	for i := range 100 {
		if _, err := h.WriteAt(buf, 500*512+int64(i%50)*4096); err != nil { // top 500..900: no poison
			t.Fatal(err)
		}
	}
	ok(t, h.Flush(bg))
	if f.sum() != before || e.Stats().Commits != commits {
		t.Fatalf("writes that cleared nothing committed (%d commits)", e.Stats().Commits-commits)
	}
	// top 324..327 is poisoned: a write covering it clears it.
	if _, err := h.WriteAt(bytes.Repeat([]byte{9}, 8*512), 320*512); err != nil {
		t.Fatal(err)
	}
	if n := e.Stats().Commits - commits; n != 1 {
		t.Fatalf("the write that cleared poison made %d commits, want 1", n)
	}
	if len(logged) != 1 || logged[0][len(logged[0])-1].Kind != rmapchain.Cleared || logged[0][len(logged[0])-1].Device != "top" {
		t.Fatalf("events of the clearing write: %+v", logged)
	}
	bb, err := e.Badblocks(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if bb.Ranges.String() != "{1000+16}" {
		t.Fatalf("top bad ranges after the write: %v", bb.Ranges)
	}
	if _, err := h.WriteAt(buf, 0); err != nil || e.Stats().Commits-commits != 1 {
		t.Fatalf("a later write committed: %v, %d", err, e.Stats().Commits-commits)
	}
}

// TestTargetStateOutlivesTheProcess: a target's state (changed by a
// message) is saved with the device and given back to the target by the
// next engine; a state the target cannot read makes the device broken; a
// new load starts fresh.
func TestTargetStateOutlivesTheProcess(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "m", Table: strPtr("0 64 memo " + f.leaves[0] + " 0")})
	status := func() (string, error) {
		s, err := call[control.TableResp](f, "status", control.TableReq{Name: "m"})
		if err != nil {
			return "", err
		}
		return s.Segments[0].Params, nil
	}
	if s, _ := status(); s != "fresh" {
		t.Fatalf("new target's state %q", s)
	}
	must[control.MessageResp](f, "message", control.MessageReq{Name: "m", Args: []string{"set", "remembered"}})
	if s, err := status(); err != nil || s != "remembered" {
		t.Fatalf("state in the next process: %q, %v", s, err)
	}
	// Loaded but not resumed: the inactive table's fresh state is kept too.
	must[control.Empty](f, "load", control.LoadReq{Name: "m", Table: "0 64 memo " + f.leaves[0] + " 0"})
	if s, err := call[control.TableResp](f, "status", control.TableReq{Name: "m", Inactive: true}); err != nil || s.Segments[0].Params != "fresh" {
		t.Fatalf("inactive table's state: %+v, %v", s, err)
	}
	must[control.Empty](f, "resume", control.NameReq{Name: "m"})
	if s, _ := status(); s != "fresh" {
		t.Fatalf("a new load kept the old state: %q", s)
	}
	// A state that does not restore: the device is broken, not fresh.
	must[control.MessageResp](f, "message", control.MessageReq{Name: "m", Args: []string{"set", "!garbled"}})
	info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "m"})
	if info.Broken == "" || !strings.Contains(info.Broken, "does not restore") || info.Live {
		t.Fatalf("device with an unreadable state: %+v", info)
	}
	// And it stays so: a later command does not overwrite the stored state.
	must[control.Empty](f, "create", control.CreateReq{Name: "other"})
	if info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "m"}); info.Broken == "" {
		t.Fatal("the broken device was repaired by an unrelated command")
	}
}

// TestFailerChangesAreEvents: a message that changes the sectors a target
// fails, and a write that makes them good (reported during I/O, committed
// right after), become events up the stack, as poison does.
func TestFailerChangesAreEvents(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "m", Table: strPtr("0 64 memo " + f.leaves[0] + " 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "up", Table: strPtr("0 32 linear m 16")})
	must[control.MessageResp](f, "message", control.MessageReq{Name: "m", Args: []string{"fail", "20", "4"}})
	evs := must[control.EventsResp](f, "events", control.EventsReq{})
	var got []string
	for _, ev := range evs.Events {
		got = append(got, fmt.Sprintf("%s %s %v", ev.Kind, ev.Device, ev.Ranges))
	}
	if want := []string{"media-error m {20+4}", "media-error up {4+4}"}; !slices.Equal(got, want) {
		t.Fatalf("events of the message: %v, want %v", got, want)
	}
	if bb := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: "up"}); bb.Ranges.String() != "{4+4}" {
		t.Fatalf("up's bad ranges: %v", bb.Ranges)
	}
	// The failing sectors survive a new process (they are the state).
	if _, err := call[IOResp](f, "read", IOReq{Name: "up", Offset: 4 * 512, Length: 512}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a failing sector: %v", err)
	}
	// A write over them makes them good: cleared events, committed by the write.
	must[IOResp](f, "write", IOReq{Name: "up", Offset: 4 * 512, Data: make([]byte, 4*512)})
	evs = must[control.EventsResp](f, "events", control.EventsReq{Since: 2})
	got = nil
	for _, ev := range evs.Events {
		got = append(got, fmt.Sprintf("%s %s %v", ev.Kind, ev.Device, ev.Ranges))
	}
	if want := []string{"cleared m {20+4}", "cleared up {4+4}"}; !slices.Equal(got, want) {
		t.Fatalf("events of the write: %v, want %v", got, want)
	}
	if bb := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: "m"}); !bb.Ranges.Empty() {
		t.Fatalf("m's bad ranges after the write: %v", bb.Ranges)
	}
	// Conditions show in info (memo's is not part of its saved state:
	// ask the engine that set it).
	e := f.daemonEngine()
	_, err := e.Message(bg, control.MessageReq{Name: "m", Args: []string{"down"}})
	ok(t, err)
	if info, err := e.Info(bg, control.NameReq{Name: "m"}); err != nil || !slices.Equal(info.Conditions, []string{"down"}) {
		t.Fatalf("conditions %v, %v", info.Conditions, err)
	}
}

// TestHandles: a user handle counts in Open and makes remove refuse the
// device as busy; an internal one does neither, and its I/O fails once the
// device is gone. Writes through a handle of a read-only device, or one
// opened for reading, are refused.
func TestHandles(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "d", Table: strPtr("0 64 linear " + f.leaves[0] + " 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "ro", Table: strPtr("0 64 linear " + f.leaves[0] + " 64"), ReadOnly: true})
	e := f.daemonEngine()
	h, err := e.Open(bg, control.OpenReq{Name: "d", Write: true})
	ok(t, err)
	if info, _ := e.Info(bg, control.NameReq{Name: "d"}); info.Open != 1 {
		t.Fatalf("open count with a handle: %d", info.Open)
	}
	if err := e.Remove(bg, control.RemoveReq{Name: "d"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove of an open device: %v", err)
	}
	ok(t, h.Close())
	in, err := e.OpenInternal(bg, "d", true)
	ok(t, err)
	if info, _ := e.Info(bg, control.NameReq{Name: "d"}); info.Open != 0 {
		t.Fatalf("open count with an internal handle: %d", info.Open)
	}
	ok(t, e.Remove(bg, control.RemoveReq{Name: "d"}))
	if _, err := in.ReadAt(make([]byte, 512), 0); !errors.Is(err, stack.ErrRemoved) {
		t.Fatalf("I/O of an internal handle after removal: %v", err)
	}
	in.Close()

	if _, err := e.Open(bg, control.OpenReq{Name: "ro", Write: true}); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("open of a read-only device for writing: %v", err)
	}
	r, err := e.Open(bg, control.OpenReq{Name: "ro"})
	ok(t, err)
	defer r.Close()
	if !r.ReadOnly() {
		t.Fatal("a read handle says it can write")
	}
	if _, err := r.WriteAt(make([]byte, 512), 0); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write through a read handle: %v", err)
	}
}

// TestSuspendGivesUpWithItsContext: a suspend of a device whose I/O is
// held (in a delay below it) waits without stopping other devices'
// commands, and gives up, changing nothing, when its context ends.
func TestSuspendGivesUpWithItsContext(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "slow", Table: strPtr("0 64 hold " + f.leaves[0] + " 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "top", Table: strPtr("0 64 linear slow 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "other", Table: strPtr("0 64 linear " + f.leaves[0] + " 64")})
	e := f.daemonEngine()
	h, err := e.Open(bg, control.OpenReq{Name: "top"})
	ok(t, err)
	defer h.Close()
	rctx, stopRead := context.WithCancel(bg)
	defer stopRead()
	read := make(chan error, 1)
	go func() {
		_, err := h.ReadAtContext(rctx, make([]byte, 512), 0)
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	suspended := make(chan error, 1)
	go func() { suspended <- e.Suspend(ctx, control.SuspendReq{Name: "top"}) }()
	// Meanwhile other devices' commands go on.
	time.Sleep(20 * time.Millisecond)
	ok(t, e.Suspend(bg, control.SuspendReq{Name: "other"}))
	ok(t, e.Resume(bg, control.SuspendReq{Name: "other"}))
	if err := <-suspended; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("suspend with a context: %v", err)
	}
	info, err := e.Info(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if info.Suspended {
		t.Fatal("top stays suspended after its suspend gave up")
	}
	stopRead()
	if err := <-read; !errors.Is(err, context.Canceled) {
		t.Fatalf("held read: %v", err)
	}
	// The delaying device's own suspend lets a held request go at once.
	go func() {
		_, err := h.ReadAt(make([]byte, 512), 0)
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ok(t, e.Suspend(bg, control.SuspendReq{Name: "slow"}))
	if err := <-read; err != nil {
		t.Fatalf("read let go by the suspend: %v", err)
	}
	ok(t, e.Resume(bg, control.SuspendReq{Name: "slow"}))
}

// TestExportHooks: watchers hear every lifecycle change after its commit;
// the remove hook can refuse a removal (or, deferred, hold it until the
// export says its user went); a suspend freezes and the resume thaws.
func TestExportHooks(t *testing.T) {
	f := newFixture(t, 1, 4096)
	e := f.daemonEngine()
	var changes []string
	now, stop := e.Watch(func(cs []control.DeviceChange) {
		for _, c := range cs {
			s := string(c.Kind) + " " + c.Device
			switch c.Kind {
			case control.Renamed:
				s += " from " + c.OldName
			case control.Swapped, control.Created:
				s += fmt.Sprintf(" %d", c.Size)
			}
			changes = append(changes, s)
		}
	})
	defer stop()
	if len(now) != 0 {
		t.Fatalf("devices at the start: %+v", now)
	}
	busy := true
	var calls []string
	e.SetHooks(control.Hooks{
		BeforeRemove: func(_ context.Context, d string) error {
			calls = append(calls, "before-remove "+d)
			if busy {
				return fmt.Errorf("%w: %s is mounted", stack.ErrBusy, d)
			}
			return nil
		},
		Freeze: func(_ context.Context, d string) error { calls = append(calls, "freeze "+d); return nil },
		Thaw:   func(_ context.Context, d string) error { calls = append(calls, "thaw "+d); return nil },
	})
	text := "0 64 linear " + f.leaves[0] + " 0"
	ok(t, e.Create(bg, control.CreateReq{Name: "d", Table: &text}))
	ok(t, e.Suspend(bg, control.SuspendReq{Name: "d"}))
	ok(t, e.Resume(bg, control.SuspendReq{Name: "d"}))
	ok(t, e.Suspend(bg, control.SuspendReq{Name: "d", NoLockfs: true}))
	ok(t, e.Resume(bg, control.SuspendReq{Name: "d"}))
	ok(t, e.Rename(bg, control.RenameReq{Name: "d", New: "e"}))
	if err := e.Remove(bg, control.RemoveReq{Name: "e"}); !errors.Is(err, stack.ErrBusy) || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("remove refused by the hook: %v", err)
	}
	ok(t, e.Remove(bg, control.RemoveReq{Name: "e", Deferred: true}))
	if info, err := e.Info(bg, control.NameReq{Name: "e"}); err != nil || !info.Deferred {
		t.Fatalf("deferred removal: %+v, %v", info, err)
	}
	busy = false
	e.Unused(bg, "e")
	if _, err := e.Info(bg, control.NameReq{Name: "e"}); !errors.Is(err, stack.ErrNotFound) {
		t.Fatalf("device after its user went: %v", err)
	}
	want := []string{"created d 0", "swapped d 64", "suspended d", "resumed d", "suspended d", "resumed d", "renamed e from d", "removed e"}
	if !slices.Equal(changes, want) {
		t.Errorf("changes\n got %v\nwant %v", changes, want)
	}
	// The hook is asked by the refused remove, the deferred one, the check
	// of deferred removals after that command, and when the user went.
	wantCalls := []string{"freeze d", "thaw d", "before-remove e", "before-remove e", "before-remove e", "before-remove e"}
	if !slices.Equal(calls, wantCalls) {
		t.Errorf("hook calls\n got %v\nwant %v", calls, wantCalls)
	}
}

// TestDeferredRemoveLastHandle: remove --deferred of an open device
// succeeds and removes it when its last user handle closes.
func TestDeferredRemoveLastHandle(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "d", Table: strPtr("0 64 linear " + f.leaves[0] + " 0")})
	e := f.daemonEngine()
	h, err := e.Open(bg, control.OpenReq{Name: "d"})
	ok(t, err)
	ok(t, e.Remove(bg, control.RemoveReq{Name: "d", Deferred: true}))
	if _, err := e.Info(bg, control.NameReq{Name: "d"}); err != nil {
		t.Fatalf("removed while open: %v", err)
	}
	ok(t, h.Close())
	if _, err := e.Info(bg, control.NameReq{Name: "d"}); !errors.Is(err, stack.ErrNotFound) {
		t.Fatalf("not removed when its last handle closed: %v", err)
	}
}

// TestSplitPiecesKeepState: error-range cuts a stateful segment into
// pieces that keep the state of the target they are pieces of, and
// good-range brings the state back with the whole segment.
func TestSplitPiecesKeepState(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "m", Table: strPtr("0 64 memo " + f.leaves[0] + " 0")})
	must[control.MessageResp](f, "message", control.MessageReq{Name: "m", Args: []string{"set", "kept"}})
	must[control.Empty](f, "error-range", control.RangeReq{Name: "m", Sector: 10, Count: 4})
	st := must[control.TableResp](f, "status", control.TableReq{Name: "m"})
	var got []string
	for _, s := range st.Segments {
		got = append(got, s.Target+":"+s.Params)
	}
	if want := []string{"memo:kept", "error:", "memo:kept"}; !slices.Equal(got, want) {
		t.Fatalf("pieces %v, want %v", got, want)
	}
	must[control.Empty](f, "good-range", control.RangeReq{Name: "m", Sector: 10, Count: 4})
	st = must[control.TableResp](f, "status", control.TableReq{Name: "m"})
	if len(st.Segments) != 1 || st.Segments[0].Params != "kept" {
		t.Fatalf("after good-range: %+v", st.Segments)
	}
}
