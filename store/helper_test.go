package store_test

// Shared test helpers: child processes (the test binary re-executed with
// helperEnv set), sample records, record comparison that does not go
// through JSON, and file hashing.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// Environment of a helper child process.
const (
	helperEnv  = "DAXSTACK_STORE_TEST_HELPER" // the mode; unset in the parent
	helperDB   = "DAXSTACK_STORE_TEST_DB"
	helperArgs = "DAXSTACK_STORE_TEST_ARGS" // mode-specific, space separated
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperDB), strings.Fields(os.Getenv(helperArgs))))
	}
	os.Exit(m.Run())
}

// runHelper is the main function of a child process. It reports on
// stdout, one line per fact, and returns the exit status.
func runHelper(mode, path string, args []string) int {
	fail := func(err error) int {
		fmt.Printf("error %v\n", err)
		return 1
	}
	switch mode {
	case "open": // args: timeout ro|rw hold|close
		timeout, err := time.ParseDuration(args[0])
		if err != nil {
			return fail(err)
		}
		start := time.Now()
		db, err := store.Open(path, store.Options{Timeout: timeout, ReadOnly: args[1] == "ro"})
		switch {
		case errors.Is(err, store.ErrLocked):
			fmt.Printf("locked %d\n", time.Since(start))
			return 0
		case err != nil:
			return fail(err)
		}
		fmt.Println("open")
		if args[2] == "hold" {
			io.Copy(io.Discard, os.Stdin) // until the parent closes it
		}
		if err := db.Close(); err != nil {
			return fail(err)
		}
		return 0

	case "crash": // loop crashSteps until killed
		db, err := store.Open(path, store.Options{Timeout: 10 * time.Second})
		if err != nil {
			return fail(err)
		}
		for {
			var step uint64
			err := db.Update(func(tx *store.Tx) error {
				var err error
				if step, err = storedStep(tx); err != nil {
					return err
				}
				step++
				return applyStep(tx, step)
			})
			if err != nil {
				return fail(err)
			}
			fmt.Println(step) // one write(2) to a pipe: atomic
		}

	case "writer": // args: id n timeout
		id := args[0]
		n, _ := strconv.Atoi(args[1])
		timeout, err := time.ParseDuration(args[2])
		if err != nil {
			return fail(err)
		}
		for k := range n {
			db, err := store.Open(path, store.Options{Timeout: timeout})
			if errors.Is(err, store.ErrLocked) {
				fmt.Printf("locked %s %d\n", id, k)
				continue
			} else if err != nil {
				return fail(err)
			}
			err = db.Update(func(tx *store.Tx) error { return writerStep(tx, id, k) })
			if err != nil {
				db.Close()
				return fail(err)
			}
			fmt.Printf("ok %s %d\n", id, k)
			if err := db.Close(); err != nil {
				return fail(err)
			}
		}
		return 0
	}
	return fail(fmt.Errorf("unknown helper mode %q", mode))
}

// child is a running helper process with its stdout as a channel of lines.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // closed at EOF
}

func startChild(t testing.TB, mode, path string, args ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDB+"="+path, helperArgs+"="+strings.Join(args, " "),
		// Under -race a child would otherwise sleep a second on exit.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		defer close(c.lines)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c
}

// next returns the child's next line, failing the test at EOF or after a
// minute.
func (c *child) next(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("helper %v ended without saying more", c.cmd.Args)
		}
		return l
	case <-time.After(time.Minute):
		t.Fatalf("helper %v said nothing for a minute", c.cmd.Args)
	}
	return ""
}

// rest closes the child's stdin, returns its remaining lines until EOF
// and waits for it to end.
func (c *child) rest() ([]string, error) {
	c.stdin.Close() // a holding child lets go at EOF
	var out []string
	for l := range c.lines {
		out = append(out, l)
	}
	return out, c.cmd.Wait()
}

// newDB creates a database in a fresh temporary directory and returns its
// path; the database is closed.
func newDB(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "daxstack.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustOpen(t testing.TB, path string, o store.Options) *store.DB {
	t.Helper()
	db, err := store.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rawUpdate changes a closed database with bbolt directly, behind the
// store's back.
func rawUpdate(t testing.TB, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func strp(s string) *string { return &s }

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// Sample records with every field set.
func sampleDevice(name string) store.DeviceRecord {
	return store.DeviceRecord{
		Name: name, UUID: "LVM-" + name, Minor: 7,
		Active:    strp("0 1024 linear /dev/pmem0 2048\n1024 512 error"),
		Inactive:  strp("0 4096 striped 2 8 /dev/pmem0 0 /dev/pmem1 0"),
		Suspended: true, ReadOnly: true, EventNr: 1 << 40,
		Pristine:       strp("0 1536 linear /dev/pmem0 2048"),
		ErrorRanges:    extent.FromRuns(extent.Run{Start: 1024, Len: 8, Stride: 64, Count: 8}),
		Created:        t0.In(time.FixedZone("CET", 3600)),
		ActiveState:    []store.TargetState{{Segment: 1, Start: 1024, Type: "dust", State: []byte("enabled 5 7")}},
		InactiveState:  []store.TargetState{{Segment: 0, Start: 0, Type: "flakey", State: []byte{0, 1, 2}}},
		DeferredRemove: true,
	}
}

func sampleLeaf(id string) store.LeafRecord {
	return store.LeafRecord{
		ID: id, Ref: "/dev/pmem0", Path: "/dev/pmem0", Name: "pmem0", Kind: "pmem",
		Size: 1 << 41, Identity: []byte(`{"uuid":"1c0e9c5a","serial":12}`),
		Lost: true, LostSince: t0.Add(time.Hour), Shrunk: 24,
	}
}

func sampleHolder(dev string) store.HolderRecord {
	return store.HolderRecord{Device: dev, Holder: "xfs:/mnt/data", PID: 4242, Since: t0.Add(-time.Minute)}
}

func sampleEvent(i int) rmapchain.Event {
	return rmapchain.Event{
		Seq: 999, Time: t0.Add(time.Duration(i) * time.Second), Kind: rmapchain.MediaError,
		Device: fmt.Sprintf("dev%d", i),
		Ranges: extent.Of(extent.Extent{Start: uint64(i) * 8, Len: 8}),
		Cause:  rmapchain.Cause{Device: "/dev/pmem0", Ranges: extent.FromRuns(extent.Run{Start: uint64(i), Len: 1, Stride: 4, Count: 3})},
	}
}

// sampleFollowUp is an event with the fields only the daemon's follow-ups
// set (never logged), so that they too are known to be kept if they were.
func sampleFollowUp(i int) rmapchain.Event {
	ev := sampleEvent(i)
	ev.Kind = "files"
	ev.Files = json.RawMessage(`[{"path":"/mnt/a","inode":12,"offset":0,"length":4096}]`)
	ev.FilesTruncated = true
	ev.Metadata = json.RawMessage(`[{"kind":"journal","offset":8,"length":8}]`)
	return ev
}

// Record renderings for comparison, field by field and without JSON, so
// that a field the store drops is noticed. Each checks that it knows all
// fields of its type.

func checkFields(t testing.TB, v any, n int) {
	t.Helper()
	if got := reflect.TypeOf(v).NumField(); got != n {
		t.Fatalf("%T has %d fields, the test renders %d: update the test", v, got, n)
	}
}

func ps(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return strconv.Quote(*p)
}

func ts(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func showDevice(t testing.TB, r store.DeviceRecord) string {
	checkFields(t, r, 14)
	return fmt.Sprintf("%q %q %d %s %s %v %v %d %s %s %s %s %s %v", r.Name, r.UUID, r.Minor, ps(r.Active), ps(r.Inactive),
		r.Suspended, r.ReadOnly, r.EventNr, ps(r.Pristine), r.ErrorRanges, ts(r.Created),
		showStates(r.ActiveState), showStates(r.InactiveState), r.DeferredRemove)
}

func showStates(s []store.TargetState) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "[%d %d %q %q]", x.Segment, x.Start, x.Type, x.State)
	}
	return b.String()
}

func showLeaf(t testing.TB, r store.LeafRecord) string {
	checkFields(t, r, 10)
	return fmt.Sprintf("%q %q %q %q %q %d %q %v %s %d", r.ID, r.Ref, r.Path, r.Name, r.Kind, r.Size, r.Identity, r.Lost, ts(r.LostSince), r.Shrunk)
}

func showHolder(t testing.TB, r store.HolderRecord) string {
	checkFields(t, r, 4)
	return fmt.Sprintf("%q %q %d %s", r.Device, r.Holder, r.PID, ts(r.Since))
}

func showEvent(t testing.TB, e rmapchain.Event) string {
	checkFields(t, e, 9)
	checkFields(t, e.Cause, 2)
	return fmt.Sprintf("%d %s %q %q %s %q %s %s %v %s", e.Seq, ts(e.Time), e.Kind, e.Device, e.Ranges, e.Cause.Device, e.Cause.Ranges,
		e.Files, e.FilesTruncated, e.Metadata)
}

// nonZero fails if any field of the struct v is its zero value, so a
// sample exercises every field.
func nonZero(t testing.TB, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("sample %T leaves %s zero", v, rv.Type().Field(i).Name)
		}
	}
}
