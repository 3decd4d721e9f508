package control_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

// fixture is a database and file leaves in a temporary directory.
type fixture struct {
	t      *testing.T
	dir    string
	db     string
	leaves []string
	now    time.Time
}

func newFixture(t *testing.T, leaves int, sectors int64) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	f.db = filepath.Join(f.dir, "daxstack.db")
	for i := range leaves {
		p := filepath.Join(f.dir, fmt.Sprintf("leaf%d.img", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, sectors*512); err != nil {
			t.Fatal(err)
		}
		f.leaves = append(f.leaves, p)
	}
	return f
}

func (f *fixture) open(readOnly bool) *control.Engine {
	f.t.Helper()
	e, err := control.Open(control.Config{DB: f.db, ReadOnly: readOnly, LockTimeout: 2 * time.Second,
		SysfsRoot: filepath.Join(f.dir, "nosys"), Now: func() time.Time { return f.now }})
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// call runs one command on a fresh engine, as one CLI invocation does.
func call[R any](f *fixture, method string, req any) (R, error) {
	f.t.Helper()
	var zero R
	res, err := dispatch(context.Background(), f.local(), method, req)
	if r, ok := res.(R); ok {
		return r, err
	}
	return zero, err
}

// local is the API a CLI process without a daemon has on the fixture.
func (f *fixture) local() *control.Local {
	return &control.Local{Config: control.Config{DB: f.db, LockTimeout: 2 * time.Second,
		SysfsRoot: filepath.Join(f.dir, "nosys"), Now: func() time.Time { return f.now }}}
}

func must[R any](f *fixture, method string, req any) R {
	f.t.Helper()
	r, err := call[R](f, method, req)
	if err != nil {
		f.t.Fatalf("%s %+v: %v", method, req, err)
	}
	return r
}

func (f *fixture) sum() [32]byte {
	f.t.Helper()
	b, err := os.ReadFile(f.db)
	if err != nil {
		f.t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// oracleStack builds the kernel oracle's stack on file leaves.
func (f *fixture) oracleStack() {
	f.t.Helper()
	s0 := fmt.Sprintf("0 2048 striped 2 8 %s 64 %s 128", f.leaves[0], f.leaves[1])
	top := fmt.Sprintf("0 1000 linear s0 24\n1000 16 error\n1016 200 linear %s 40\n1216 32 zero", f.leaves[2])
	must[control.Empty](f, "create", control.CreateReq{Name: "s0", Table: &s0})
	must[control.Empty](f, "create", control.CreateReq{Name: "top", Table: &top})
}

func tableLines(r control.TableResp) string {
	var s []string
	for _, g := range r.Segments {
		s = append(s, stack.FormatLine(g.Start, g.Length, g.Target, g.Params))
	}
	return strings.Join(s, "\n")
}

func TestTablesSurviveReopen(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "top"}))
	want := fmt.Sprintf("0 1000 linear s0 24\n1000 16 error \n1016 200 linear %s 40\n1216 32 zero ", f.leaves[2])
	if got != want {
		t.Fatalf("top table\n got %q\nwant %q", got, want)
	}
	info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "s0"})
	if info.Open != 1 || info.Targets != 1 || !info.Live || info.Minor != 0 {
		t.Fatalf("s0 info %+v", info)
	}
	// Load an inactive table, suspend, reopen: both slots and the state stay.
	must[control.Empty](f, "load", control.LoadReq{Name: "top", Table: "0 100 zero"})
	must[control.Empty](f, "suspend", control.NameReq{Name: "top"})
	info = must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"})
	if !info.Inactive || !info.Suspended || info.Size != 1248 {
		t.Fatalf("top after load+suspend %+v", info)
	}
	must[control.Empty](f, "resume", control.NameReq{Name: "top"})
	info = must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"})
	if info.Inactive || info.Suspended || info.Size != 100 {
		t.Fatalf("top after resume %+v", info)
	}
	// s0 is no longer used: it can go.
	must[control.Empty](f, "remove", control.RemoveReq{Name: "s0"})
	if _, err := call[control.DeviceInfo](f, "info", control.NameReq{Name: "s0"}); !errors.Is(err, stack.ErrNotFound) {
		t.Fatalf("s0 after remove: %v", err)
	}
}

// TestRefusedCommandsChangeNothing checks that every refusal leaves the
// database file byte-for-byte as it was.
func TestRefusedCommandsChangeNothing(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	bad := func(s string) *string { return &s }
	cases := []struct {
		name   string
		method string
		req    any
		is     error
		text   string
	}{
		{"stripe length", "create", control.CreateReq{Name: "bad1", Table: bad(fmt.Sprintf("0 2047 striped 2 8 %s 0 %s 0", f.leaves[0], f.leaves[1]))},
			syscall.EINVAL, "bad1: striped: Target length not divisible by number of stripes (-EINVAL)"},
		{"too small", "create", control.CreateReq{Name: "bad3", Table: bad(fmt.Sprintf("0 100000000 linear %s 0", f.leaves[0]))},
			syscall.EINVAL, "bad3: " + f.leaves[0] + " too small for target: start=0, len=100000000, dev_size=4096"},
		{"format", "create", control.CreateReq{Name: "x", Table: bad("0 x linear a 0"), Source: stack.SourceStdin},
			syscall.EINVAL, "Invalid format on line 1 of table on stdin."},
		{"exists", "create", control.CreateReq{Name: "top"}, stack.ErrExists, ""},
		{"busy", "remove", control.RemoveReq{Name: "s0"}, stack.ErrBusy, "s0 is used by top"},
		{"missing", "resume", control.NameReq{Name: "nope"}, stack.ErrNotFound, ""},
		{"gap", "load", control.LoadReq{Name: "top", Table: "0 10 zero\n11 10 zero"}, syscall.EINVAL, "top: zero: Gap in table (-EINVAL)"},
		{"cycle", "load", control.LoadReq{Name: "s0", Table: "0 10 linear top 0"}, stack.ErrLoop, ""},
		{"self", "load", control.LoadReq{Name: "s0", Table: "0 10 linear s0 0"}, syscall.EINVAL, "Device lookup failed"},
		{"splice inside a stripe row", "error-range", control.RangeReq{Name: "s0", Sector: 3, Count: 1}, syscall.EINVAL, "stripe rows"},
		{"splice outside", "error-range", control.RangeReq{Name: "top", Sector: 1240, Count: 100}, syscall.EINVAL, "outside"},
		{"inject outside", "inject", control.RangeReq{Name: "top", Sector: 1248, Count: 1}, syscall.EINVAL, ""},
		{"message", "message", control.MessageReq{Name: "top", Sector: 0, Args: []string{"hello"}}, syscall.EINVAL, "Target type does not support messages"},
		{"rename to existing", "rename", control.RenameReq{Name: "s0", New: "top"}, syscall.EBUSY, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.sum()
			_, err := call[any](f, tc.method, tc.req)
			if err == nil || !errors.Is(err, tc.is) {
				t.Fatalf("%s: err %v, want %v", tc.method, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				var te *stack.TableError
				if !errors.As(err, &te) || !strings.Contains(te.Text, tc.text) {
					t.Fatalf("error %q lacks %q", err, tc.text)
				}
			}
			if f.sum() != before {
				t.Fatalf("database changed by a refused %s", tc.method)
			}
		})
	}
	var te *stack.TableError
	_, err := call[control.Empty](f, "create", control.CreateReq{Name: "bad1", Table: bad(fmt.Sprintf("0 2047 striped 2 8 %s 0 %s 0", f.leaves[0], f.leaves[1]))})
	if !errors.As(err, &te) || te.Text != "bad1: striped: Target length not divisible by number of stripes (-EINVAL)" {
		t.Fatalf("table error text: %v", err)
	}
	var oe *control.OpError
	if !errors.As(err, &oe) || oe.Op != "reload" || oe.Device != "bad1" {
		t.Fatalf("op error: %+v", oe)
	}
}

func TestInjectTranslatesAndPersists(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	// Poison at the top: top 324..327 is s0 348..351 is leaf1 300..303.
	resp := must[control.InjectResp](f, "inject", control.RangeReq{Name: "top", Sector: 324, Count: 4})
	if len(resp.Leaves) != 1 || resp.Leaves[0] != (control.LeafRange{Leaf: f.leaves[1], Sector: 300, Count: 4}) {
		t.Fatalf("inject landed at %+v", resp.Leaves)
	}
	for dev, want := range map[string]string{"top": "{324+4 1000+16}", "s0": "{348+4}", f.leaves[1]: "{300+4}", f.leaves[0]: "{}"} {
		got := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: dev})
		if got.Ranges.String() != want {
			t.Errorf("badblocks %s = %v, want %s", dev, got.Ranges, want)
		}
	}
	evs := must[control.EventsResp](f, "events", control.EventsReq{})
	var seen []string
	for i, ev := range evs.Events {
		if ev.Seq != uint64(i+1) || ev.Kind != rmapchain.MediaError || ev.Cause.Device != f.leaves[1] {
			t.Errorf("event %d: %+v", i, ev)
		}
		seen = append(seen, ev.Device+":"+ev.Ranges.String())
	}
	want := []string{f.leaves[1] + ":{300+4}", "s0:{348+4}", "top:{324+4}"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", seen, want)
	}
	if info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"}); info.Events != 1 || info.Bad != 20 {
		t.Fatalf("top info after inject: %+v", info)
	}
	// Reads fail exactly on the bad sectors; 323 is fine.
	if _, err := call[IOResp](f, "read", IOReq{Name: "top", Offset: 323 * 512, Length: 512}); err != nil {
		t.Fatalf("read 323: %v", err)
	}
	_, err := call[IOResp](f, "read", IOReq{Name: "top", Offset: 324 * 512, Length: 512})
	var ioe *stack.IOError
	if !errors.Is(err, syscall.EIO) || !errors.As(err, &ioe) || ioe.Device != "top" || ioe.Sector != 324 {
		t.Fatalf("read 324: %v", err)
	}
	// A write over the whole bad sectors clears them, with cleared events.
	n := must[IOResp](f, "write", IOReq{Name: "top", Offset: 324 * 512, Data: bytes.Repeat([]byte{'x'}, 4*512)})
	if n.N != 4*512 {
		t.Fatalf("write wrote %d", n.N)
	}
	if got := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: "top"}); got.Ranges.String() != "{1000+16}" {
		t.Fatalf("top after rewrite: %v", got.Ranges)
	}
	evs = must[control.EventsResp](f, "events", control.EventsReq{Since: 3})
	if len(evs.Events) != 3 || evs.Events[2].Kind != rmapchain.Cleared || evs.Events[2].Device != "top" || evs.Events[2].Ranges.String() != "{324+4}" {
		t.Fatalf("cleared events: %+v", evs.Events)
	}
}

func TestErrorRangeRestoresTableExactly(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	orig := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "top"}))
	must[control.Empty](f, "error-range", control.RangeReq{Name: "top", Sector: 100, Count: 8})
	must[control.Empty](f, "error-range", control.RangeReq{Name: "top", Sector: 1020, Count: 4})
	got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "top"}))
	want := fmt.Sprintf("0 100 linear s0 24\n100 8 error \n108 892 linear s0 132\n1000 16 error \n1016 4 linear %[1]s 40\n1020 4 error \n1024 192 linear %[1]s 48\n1216 32 zero ", f.leaves[2])
	if got != want {
		t.Fatalf("spliced table\n got %q\nwant %q", got, want)
	}
	if bb := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: "top"}); bb.Ranges.String() != "{100+8 1000+16 1020+4}" {
		t.Fatalf("badblocks %v", bb.Ranges)
	}
	must[control.Empty](f, "good-range", control.RangeReq{Name: "top", Sector: 1020, Count: 4})
	must[control.Empty](f, "good-range", control.RangeReq{Name: "top", Sector: 96, Count: 16})
	if got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "top"})); got != orig {
		t.Fatalf("after good-range\n got %q\nwant %q", got, orig)
	}
	evs := must[control.EventsResp](f, "events", control.EventsReq{})
	var kinds []string
	for _, e := range evs.Events {
		kinds = append(kinds, string(e.Kind)+" "+e.Device+" "+e.Ranges.String())
	}
	want2 := "media-error top {100+8}|media-error top {1020+4}|cleared top {1020+4}|cleared top {100+8}"
	if strings.Join(kinds, "|") != want2 {
		t.Fatalf("events\n got %s\nwant %s", strings.Join(kinds, "|"), want2)
	}
}

func TestLostLeafDegradesAndKeepsEverything(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	before := must[control.TableResp](f, "table", control.TableReq{Name: "s0"})
	if err := os.Remove(f.leaves[1]); err != nil {
		t.Fatal(err)
	}
	info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"})
	if len(info.Lost) != 1 || info.Lost[0] != f.leaves[1] {
		t.Fatalf("top not degraded: %+v", info)
	}
	// Everything leaf1 backs is bad: stripe 1 of s0, strided.
	bb := must[control.DeviceRanges](f, "badblocks", control.NameReq{Name: "s0"})
	if bb.Ranges.String() != "{8+8*128/16}" {
		t.Fatalf("s0 bad ranges with leaf1 lost: %v", bb.Ranges)
	}
	// An unrelated change is committed; the stored tables stay intact.
	must[control.Empty](f, "create", control.CreateReq{Name: "other", Table: strPtr("0 8 zero")})
	after := must[control.TableResp](f, "table", control.TableReq{Name: "s0"})
	if tableLines(after) != tableLines(before) {
		t.Fatalf("s0 table changed while its leaf was lost:\n%s\n%s", tableLines(before), tableLines(after))
	}
}

func strPtr(s string) *string { return &s }

func TestRenameRewritesParents(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	must[control.Empty](f, "rename", control.RenameReq{Name: "s0", New: "stripes"})
	got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "top"}))
	if !strings.HasPrefix(got, "0 1000 linear stripes 24\n") {
		t.Fatalf("top after rename: %q", got)
	}
	if _, err := call[control.TableResp](f, "table", control.TableReq{Name: "s0"}); !errors.Is(err, stack.ErrNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
}

func TestClaims(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	pid := os.Getpid()
	must[control.ClaimResp](f, "claim", control.ClaimReq{Device: "top", Holder: "fs", PID: pid})
	if _, err := call[control.ClaimResp](f, "claim", control.ClaimReq{Device: "top", Holder: "other", PID: pid}); !errors.Is(err, stack.ErrBusy) || !strings.Contains(err.Error(), "held by fs") {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := call[control.ClaimResp](f, "claim", control.ClaimReq{Device: "s0", Holder: "fs2", PID: pid}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("claim of a device a table uses: %v", err)
	}
	if _, err := call[control.Empty](f, "remove", control.RemoveReq{Name: "top"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove of a held device: %v", err)
	}
	must[control.Empty](f, "release", control.ClaimReq{Device: "top", Holder: "fs"})
	must[control.Empty](f, "remove", control.RemoveReq{Name: "top"})
	// A leaf held externally cannot join a table, and a leaf a table uses
	// cannot be held.
	if _, err := call[control.ClaimResp](f, "claim", control.ClaimReq{Device: f.leaves[0], Holder: "db", PID: pid}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("claim of a leaf s0 uses: %v", err)
	}
	must[control.ClaimResp](f, "claim", control.ClaimReq{Device: f.leaves[2], Holder: "db", PID: pid})
	text := fmt.Sprintf("0 8 linear %s 0", f.leaves[2])
	if _, err := call[control.Empty](f, "create", control.CreateReq{Name: "x", Table: &text}); !errors.Is(err, stack.ErrBusy) || !strings.Contains(err.Error(), "held by db") {
		t.Fatalf("table on a held leaf: %v", err)
	}
	// A claim whose process is gone is void.
	must[control.ClaimResp](f, "claim", control.ClaimReq{Device: "s0", Holder: "ghost", PID: 1 << 30})
	must[control.ClaimResp](f, "claim", control.ClaimReq{Device: "s0", Holder: "alive", PID: pid})
}

// TestRescanLostAndRestored moves a leaf file away (lost: every sector it
// backs goes bad, as strided runs) and back (restored: the same file, so the
// same identity), checking the events, the records and the bad ranges.
func TestRescanLostAndRestored(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	must[control.InjectResp](f, "inject", control.RangeReq{Name: f.leaves[1], Sector: 300, Count: 4})
	base := must[control.EventsResp](f, "events", control.EventsReq{}).Last
	if err := os.Rename(f.leaves[1], f.leaves[1]+".away"); err != nil {
		t.Fatal(err)
	}
	r := must[control.RescanResp](f, "rescan", control.Empty{})
	if len(r.Lost) != 1 || r.Lost[0] != f.leaves[1] || len(r.Restored) != 0 {
		t.Fatalf("rescan after move: %+v", r)
	}
	evs := must[control.EventsResp](f, "events", control.EventsReq{Since: base, Devices: []string{"s0"}})
	// leaf1 is stripe 1 of s0 from leaf sector 128: s0's odd chunks, all
	// 128 of them (chunk c at 16c+8), less the already-poisoned 348..351
	// in chunk 21.
	if len(evs.Events) != 1 || evs.Events[0].Kind != rmapchain.Lost ||
		evs.Events[0].Ranges.String() != "{8+8*21/16 344+4 360+8*106/16}" {
		t.Fatalf("lost events on s0: %+v", evs.Events)
	}
	if info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"}); len(info.Lost) != 1 {
		t.Fatalf("top not degraded after loss: %+v", info)
	}
	if r := must[control.RescanResp](f, "rescan", control.Empty{}); len(r.Lost)+len(r.Restored) != 0 {
		t.Fatalf("second rescan found changes again: %+v", r)
	}
	if err := os.Rename(f.leaves[1]+".away", f.leaves[1]); err != nil {
		t.Fatal(err)
	}
	r = must[control.RescanResp](f, "rescan", control.Empty{})
	if len(r.Restored) != 1 || len(r.Lost) != 0 {
		t.Fatalf("rescan after moving back: %+v", r)
	}
	info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "top"})
	if len(info.Lost) != 0 || info.Bad != 4+16 {
		t.Fatalf("top after restore: %+v", info)
	}
	// A different file at the same path is not the leaf: it stays lost.
	os.Rename(f.leaves[1], f.leaves[1]+".old")
	os.WriteFile(f.leaves[1], make([]byte, 4096*512), 0o644)
	r = must[control.RescanResp](f, "rescan", control.Empty{})
	if len(r.Lost) != 1 {
		t.Fatalf("a new file at the leaf's path was taken for the leaf: %+v", r)
	}
}

// TestErrorTargetKeepsItsDevice: "error <dev> <off>" prints no parameters,
// as the kernel does, but its device stays a dependency across commands:
// deps shows it and the device cannot be removed while the table uses it.
func TestErrorTargetKeepsItsDevice(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "X", Table: strPtr(fmt.Sprintf("0 64 linear %s 0", f.leaves[0]))})
	must[control.Empty](f, "create", control.CreateReq{Name: "e", Table: strPtr("0 16 error X 0")})
	if got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "e"})); got != "0 16 error " {
		t.Fatalf("printed table %q", got)
	}
	if info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "e"}); len(info.Deps) != 1 || info.Deps[0].Name != "X" {
		t.Fatalf("deps of e: %+v", info.Deps)
	}
	if _, err := call[control.Empty](f, "remove", control.RemoveReq{Name: "X"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove X under an error segment: %v", err)
	}
	// Splicing keeps it too.
	must[control.Empty](f, "error-range", control.RangeReq{Name: "e", Sector: 4, Count: 4})
	must[control.Empty](f, "good-range", control.RangeReq{Name: "e", Sector: 4, Count: 4})
	if info := must[control.DeviceInfo](f, "info", control.NameReq{Name: "e"}); len(info.Deps) != 1 {
		t.Fatalf("deps of e after splicing: %+v", info.Deps)
	}
}

// TestPanicReleasesTheLock: a command that panics (a bug: here a target
// constructor) returns ErrInternal, leaves the lock free and every change
// it made undone.
func TestPanicReleasesTheLock(t *testing.T) {
	f := newFixture(t, 3, 4096)
	f.oracleStack()
	e := f.open(false)
	defer e.Close()
	ctx := context.Background()
	text := "0 8 panics"
	err := e.CreateConcise(ctx, control.ConciseReq{Spec: "half-made,,,rw,0 8 zero;second,,,rw," + text})
	if !errors.Is(err, control.ErrInternal) {
		t.Fatalf("panicking command: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Info(ctx, control.NameReq{Name: "top"})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine lock was not released after a panic")
	}
	if _, err := e.Info(ctx, control.NameReq{Name: "half-made"}); !errors.Is(err, stack.ErrNotFound) {
		t.Fatalf("the panicking command's half-made device survived: %v", err)
	}
}

func init() {
	stack.Register(stack.TargetType{Name: "panics", Version: [3]uint32{1, 0, 0}, New: func(*stack.TargetInfo, []string) (stack.Target, error) {
		var t *stack.Table
		_ = t.Segments()[0] // index out of range: a bug
		return nil, nil
	}})
}
