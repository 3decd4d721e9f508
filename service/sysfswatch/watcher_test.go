package sysfswatch

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

// fastRescan is the rescan interval of tests on fake trees, where only
// rescans can see changes.
const fastRescan = 20 * time.Millisecond

// changeWait bounds the wait for a change that must come.
const changeWait = 2 * time.Second

// quiet is how long a test watches for a change that must not come: many
// fastRescan intervals.
const quiet = 200 * time.Millisecond

func newWatcher(t *testing.T, rescan time.Duration) *Watcher {
	t.Helper()
	return newWatcherOpts(t, Options{Rescan: rescan})
}

func newWatcherOpts(t *testing.T, o Options) *Watcher {
	t.Helper()
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// fakeBadblocks makes dir/sys/block/<disk>/badblocks holding content.
func fakeBadblocks(t *testing.T, dir, disk, content string) string {
	t.Helper()
	p := filepath.Join(dir, "sys", "block", disk, "badblocks")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, content)
	return p
}

// writeFile sets the content of the fake attribute p so that a watcher
// woken by the write sees as few in-between states as a regular file
// allows (a real sysfs attribute has none: the kernel makes its content
// on each read). A new file appears whole (see replaceFile). An existing
// one keeps its inode, as an attribute does: content at least as long as
// the old is written over it and the file then cut to length, so the
// watcher never finds it empty; shorter content truncates first, so a
// reader may catch it empty or part-written.
func writeFile(t *testing.T, p, content string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		replaceFile(t, p, content)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(content)) < fi.Size() {
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts a new file with content at p in one step (a rename
// over it), so that a reader sees the old file or the new one, whole.
func replaceFile(t *testing.T, p, content string) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, content string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// next returns the next change, failing t if none comes in time.
func next(t *testing.T, w *Watcher, what string) Change {
	t.Helper()
	select {
	case c, ok := <-w.Changes():
		if !ok {
			t.Fatalf("waiting for %s: Changes closed", what)
		}
		return c
	case <-time.After(changeWait):
		t.Fatalf("no change within %v while waiting for %s", changeWait, what)
	}
	panic("unreachable")
}

// short quotes b, cut to a readable length.
func short(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// wantData checks that the next change is path with content want.
func wantData(t *testing.T, w *Watcher, path, want string) {
	t.Helper()
	c := next(t, w, fmt.Sprintf("%s = %q", path, want))
	if c.Path != path || c.Err != nil || string(c.Data) != want || c.Data == nil {
		t.Fatalf("got change %s %s (err %v), want %s %s", c.Path, short(c.Data), c.Err, path, short([]byte(want)))
	}
}

// wantErr checks that the next change is path failing with target.
func wantErr(t *testing.T, w *Watcher, path string, targets ...error) {
	t.Helper()
	c := next(t, w, path+" failing")
	if c.Path != path || c.Err == nil || c.Data != nil {
		t.Fatalf("got change %s %s (err %v), want an error for %s", c.Path, short(c.Data), c.Err, path)
	}
	for _, target := range targets {
		if !errors.Is(c.Err, target) {
			t.Errorf("error %v does not match %v", c.Err, target)
		}
	}
	var pe *os.PathError
	if !errors.As(c.Err, &pe) || pe.Path != path {
		t.Errorf("error %v is not an *os.PathError for %s", c.Err, path)
	}
}

// wantNone checks that no change comes for a while.
func wantNone(t *testing.T, w *Watcher, why string) {
	t.Helper()
	select {
	case c := <-w.Changes():
		t.Fatalf("%s: unexpected change %s %s (err %v)", why, c.Path, short(c.Data), c.Err)
	case <-time.After(quiet):
	}
}

func TestBaselineThenAppend(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "100 8\n")
	w := newWatcher(t, fastRescan)
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "100 8\n")
	appendFile(t, p, "300 4\n")
	wantData(t, w, p, "100 8\n300 4\n")
	wantNone(t, w, "content unchanged")
	writeFile(t, p, "100 8\n300 4\n") // rewritten, same bytes
	wantNone(t, w, "rewritten with the same content")
	writeFile(t, p, "")
	wantData(t, w, p, "")
}

func TestRemovedAndBack(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "8 8\n")
	w := newWatcher(t, fastRescan)
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "8 8\n")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w, p, os.ErrNotExist, unix.ENOENT)
	wantNone(t, w, "still missing: reported once")
	// Back with the content it had: news after an error.
	writeFile(t, p, "8 8\n")
	wantData(t, w, p, "8 8\n")
	// The directory goes too, then comes back.
	if err := os.RemoveAll(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w, p, os.ErrNotExist)
	fakeBadblocks(t, filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(p)))), "pmem0", "16 1\n")
	wantData(t, w, p, "16 1\n")
	appendFile(t, p, "32 1\n") // and the new file is the one watched
	wantData(t, w, p, "16 1\n32 1\n")
}

func TestReplacedByRename(t *testing.T) {
	dir := t.TempDir()
	p := fakeBadblocks(t, dir, "pmem0", "1 1\n")
	w := newWatcher(t, fastRescan)
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "1 1\n")
	replace := func(content string) {
		tmp := filepath.Join(dir, "tmp")
		writeFile(t, tmp, content)
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	replace("1 1\n")
	wantNone(t, w, "replaced by a file with the same content")
	replace("2 2\n")
	wantData(t, w, p, "2 2\n")
	appendFile(t, p, "3 3\n")
	wantData(t, w, p, "2 2\n3 3\n")
}

func TestRescanNow(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "")
	w := newWatcherOpts(t, Options{Rescan: time.Hour, Poll: -1})
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "")
	appendFile(t, p, "5 5\n")
	// A regular file never wakes poll, the periodic re-read is off and
	// the next rescan is an hour away.
	wantNone(t, w, "no rescan yet")
	w.Rescan()
	wantData(t, w, p, "5 5\n")
}

func TestAddErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(t, fastRescan)
	tests := []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(dir, "nope"), os.ErrNotExist},
		{"directory", dir, ErrNotRegular},
		{"fifo", fifo, ErrNotRegular},
		{"device", "/dev/null", ErrNotRegular},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Add(tc.path)
			var pe *os.PathError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Path != tc.path {
				t.Errorf("Add(%s) = %v, want an *os.PathError matching %v", tc.path, err, tc.want)
			}
		})
	}
	wantNone(t, w, "nothing added")
	w.Close()
	p := fakeBadblocks(t, dir, "pmem0", "")
	if err := w.Add(p); !errors.Is(err, ErrClosed) || !errors.Is(err, os.ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
}

func TestAddTwiceAndRemove(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "1 1\n")
	w := newWatcher(t, fastRescan)
	for range 2 {
		if err := w.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	wantData(t, w, p, "1 1\n")
	wantNone(t, w, "added twice, one baseline")
	w.Remove(p)
	w.Remove(p + ".not-watched")
	appendFile(t, p, "2 2\n")
	wantNone(t, w, "removed")
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "1 1\n2 2\n") // a new baseline
}

func TestTooLarge(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", strings.Repeat("x", MaxSize+1))
	w := newWatcher(t, fastRescan)
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w, p, ErrTooLarge)
	// Shrinking in place would let the watcher read a part-written file.
	replaceFile(t, p, strings.Repeat("y", MaxSize))
	wantData(t, w, p, strings.Repeat("y", MaxSize))
}

// TestSlowReader changes files while nobody reads: every path's latest
// content arrives in the end, intermediate ones may be merged away.
func TestSlowReader(t *testing.T) {
	dir := t.TempDir()
	w := newWatcher(t, fastRescan)
	const n = 40 // more than the channel buffers
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fakeBadblocks(t, dir, fmt.Sprintf("pmem%d", i), "0 1\n")
		if err := w.Add(paths[i]); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 3; round++ {
		time.Sleep(3 * fastRescan)
		for i, p := range paths {
			writeFile(t, p, fmt.Sprintf("%d %d\n", i, round))
		}
	}
	latest := map[string]string{}
	received := 0
	deadline := time.After(5 * time.Second)
	for {
		done := len(latest) == n
		for i, p := range paths {
			done = done && latest[p] == fmt.Sprintf("%d 3\n", i)
		}
		if done {
			break
		}
		select {
		case c := <-w.Changes():
			if c.Err != nil {
				t.Fatalf("%s: %v", c.Path, c.Err)
			}
			latest[c.Path] = string(c.Data)
			received++
		case <-deadline:
			t.Fatalf("latest contents not all delivered: %v", latest)
		}
	}
	// Each path had 4 contents (baseline, 3 rounds). While the reader
	// is away the watcher holds what the channel buffers plus one change
	// per path, the others merged into it; once reading resumes, the
	// first rescan finds the last round and adds one change for each
	// path whose pending change was already in the channel or on its
	// way: cap+1 at most.
	if limit := n + cap(w.Changes()) + 1; received > limit {
		t.Errorf("%d changes received, want at most %d (undelivered changes merged)", received, limit)
	}
	t.Logf("%d changes received for %d paths changed 4 times each", received, n)
}

// TestCloseUnread closes a watcher whose reader stopped reading: Close
// returns, the channel is closed, and every descriptor is released.
func TestCloseUnread(t *testing.T) {
	before := openFDs(t)
	dir := t.TempDir()
	w, err := New(Options{Rescan: fastRescan})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := w.Add(fakeBadblocks(t, dir, fmt.Sprintf("pmem%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * fastRescan) // the goroutine is now stuck delivering
	closed := make(chan struct{})
	go func() {
		w.Close()
		w.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(changeWait):
		t.Fatal("Close blocked")
	}
	for range w.Changes() { // buffered changes, then closed
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before New, %d after Close", before, after)
	}
}

// TestConcurrent has everything happen at once, for the race detector,
// and then checks the watcher still reports the truth.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	w := newWatcher(t, fastRescan)
	const n = 8
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fakeBadblocks(t, dir, fmt.Sprintf("pmem%d", i), "")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[(i+g)%n]
				switch (i + g) % 5 {
				case 0, 1:
					w.Add(p)
				case 2:
					w.Remove(p)
				case 3:
					w.Rescan()
				case 4:
					writeFile(t, p, fmt.Sprintf("%d %d\n", g, i))
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	readerDone := make(chan int)
	go func() {
		count := 0
		for {
			select {
			case <-w.Changes():
				count++
			case <-stop:
				readerDone <- count
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d changes read during the storm", <-readerDone)

	// Settle: every path watched, known content, and the watcher agrees.
	for _, p := range paths {
		if err := w.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	for drained := false; !drained; {
		select {
		case <-w.Changes():
		case <-time.After(quiet):
			drained = true
		}
	}
	want := map[string]string{}
	for i, p := range paths {
		want[p] = fmt.Sprintf("final %d\n", i)
		writeFile(t, p, want[p])
	}
	// A fake attribute is rewritten by truncating it and then writing, so
	// the watcher may first report it empty (real sysfs attributes never
	// are: the kernel makes their content on each read). What counts is
	// that every path's latest change ends at its final content; next
	// fails the test if one never does.
	got := map[string]string{}
	for !maps.Equal(got, want) {
		c := next(t, w, fmt.Sprintf("the final contents (have %q)", got))
		if c.Err != nil {
			t.Fatalf("%s: %v", c.Path, c.Err)
		}
		got[c.Path] = string(c.Data)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// cgroup2Mount returns where the cgroup2 hierarchy is mounted.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" {
			return f[4]
		}
	}
	testenv.Unavailable(t, "no cgroup2 hierarchy mounted")
	return ""
}

// TestKernfsNotify proves the poll(2) path on a real kernel file. No
// sysfs attribute here can be made to sysfs_notify() without pmem, md or
// GPIO hardware, so it uses cgroup2's cgroup.events: cgroupfs is kernfs
// like sysfs, and the kernel notifies it through kernfs_notify() (the
// function sysfs_notify() ends in) whenever "populated" changes, so a
// poll on it wakes exactly as on /sys/block/pmemX/badblocks. The rescan
// is an hour away and the periodic re-read is off: only poll can deliver
// these changes.
func TestKernfsNotify(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "sleep")
	cg := filepath.Join(cgroup2Mount(t), fmt.Sprintf("daxstack-sysfswatch-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("cannot create a cgroup: %v", err))
	}
	t.Cleanup(func() { os.Remove(cg) })
	events := filepath.Join(cg, "cgroup.events")
	w := newWatcherOpts(t, Options{Rescan: time.Hour, Poll: -1})
	if err := w.Add(events); err != nil {
		t.Fatal(err)
	}
	populated := func(what, want string) {
		t.Helper()
		start := time.Now()
		c := next(t, w, what)
		if c.Path != events || c.Err != nil || !bytes.Contains(c.Data, []byte("populated "+want+"\n")) {
			t.Fatalf("%s: got %s %q (err %v), want populated %s", what, c.Path, c.Data, c.Err, want)
		}
		t.Logf("%s: %q after %v", what, c.Data, time.Since(start))
	}
	populated("baseline", "0")

	sleeper := startSleeper(t)
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), fmt.Appendf(nil, "%d", sleeper.Pid), 0); err != nil {
		t.Fatalf("moving pid %d into %s: %v", sleeper.Pid, cg, err)
	}
	populated("a process moved in", "1")

	if err := sleeper.Kill(); err != nil {
		t.Fatal(err)
	}
	populated("the process gone", "0")

	// The cgroup goes. Removing a kernfs node does not wake poll, but
	// the next poll of the old descriptor reports POLLERR and its read
	// fails (ENODEV); the path is then looked up and found gone. Adding
	// another file makes the watcher poll again, without a rescan.
	if err := os.Remove(cg); err != nil {
		t.Fatal(err)
	}
	other := fakeBadblocks(t, t.TempDir(), "pmem0", "")
	if err := w.Add(other); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c := next(t, w, "the baseline of another file and the cgroup's removal")
		switch {
		case c.Path == other && c.Err == nil:
		case c.Path == events && errors.Is(c.Err, os.ErrNotExist):
			t.Logf("cgroup removed: %v", c.Err)
		default:
			t.Fatalf("unexpected change %s %s (err %v)", c.Path, short(c.Data), c.Err)
		}
	}
	wantNone(t, w, "the removal is reported once")
}

// startSleeper starts "sleep 60", killed at cleanup.
func startSleeper(t *testing.T) *os.Process {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process
}
