package sysfswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPollSeesUnnotifiedWrite is a user's write to a pmem disk's
// badblocks file, which the kernel does not sysfs_notify: with the
// rescan an hour away, only the periodic re-read can see it, and it does
// with the default options. The bound is generous (the watcher re-reads
// every DefaultPoll); BenchmarkInjectionLatency measures the latency.
func TestPollSeesUnnotifiedWrite(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "")
	w := newWatcherOpts(t, Options{Rescan: time.Hour})
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "")
	for i, content := range []string{"100 8\n", "100 8\n300 4\n", ""} {
		writeFile(t, p, content)
		// A rewrite may show an empty file on the way (writeFile says
		// when); take changes until the content arrives.
		for {
			c := next(t, w, fmt.Sprintf("write %d: %q", i, content))
			if c.Err != nil || c.Path != p {
				t.Fatalf("change %s %s (err %v)", c.Path, short(c.Data), c.Err)
			}
			if string(c.Data) == content {
				break
			}
		}
	}
}

// TestPollQuietWhenUnchanged: re-reading content that did not change
// sends nothing, however often it is done, and a file that cannot be
// read is left to the rescan.
func TestPollQuietWhenUnchanged(t *testing.T) {
	dir := t.TempDir()
	p := fakeBadblocks(t, dir, "pmem0", "8 8\n")
	w := newWatcherOpts(t, Options{Rescan: time.Hour, Poll: time.Millisecond})
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "8 8\n")
	wantNone(t, w, "polled 200 times, content unchanged")
	writeFile(t, p, "8 8\n") // same bytes written again
	wantNone(t, w, "rewritten with the same bytes")
	writeFile(t, p, "9 9\n")
	wantData(t, w, p, "9 9\n")
}

// TestPollOff: a negative Poll leaves poll(2) and the rescans alone.
func TestPollOff(t *testing.T) {
	p := fakeBadblocks(t, t.TempDir(), "pmem0", "")
	w := newWatcherOpts(t, Options{Rescan: time.Hour, Poll: -1})
	if err := w.Add(p); err != nil {
		t.Fatal(err)
	}
	wantData(t, w, p, "")
	writeFile(t, p, "1 1\n")
	wantNone(t, w, "no re-read, no rescan")
	w.Rescan()
	wantData(t, w, p, "1 1\n")
}

// BenchmarkInjectionLatency measures how long a change nobody notifies
// (a user's "echo 'start count' > /sys/block/pmemN/badblocks") takes to
// reach the reader of Changes with the default options, the rescan an
// hour away. Each iteration waits a random part of the poll interval,
// writes new content and waits for it. Reported: the mean, the median
// and the worst latency in ms, and the mean as a ratio to a baseline
// measured in the same run, the latency of an explicit Rescan (what a
// notified change costs: one wake-up and one read).
//
//	go test ./service/sysfswatch -run '^$' -bench InjectionLatency -benchtime 40x -count 3
func BenchmarkInjectionLatency(b *testing.B) {
	p := fakeBadblocksB(b, "pmem0")
	w, err := New(Options{Rescan: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(p); err != nil {
		b.Fatal(err)
	}
	<-w.Changes() // the baseline
	measure := func(n int, rescan bool) []time.Duration {
		var lat []time.Duration
		for i := range n {
			// Land anywhere in the poll cycle.
			time.Sleep(time.Duration(uint64(i)*2654435761%uint64(DefaultPoll/time.Microsecond)) * time.Microsecond)
			content := fmt.Sprintf("%d 8\n", 1000+i*8+boolInt(rescan)*1000000)
			start := time.Now()
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
			if rescan {
				w.Rescan()
			}
			for {
				c := <-w.Changes()
				if string(c.Data) == content {
					break
				}
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	b.ResetTimer()
	lat := measure(b.N, false)
	b.StopTimer()
	base := measure(max(b.N, 10), true)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(mean(lat)), "mean-ms")
	b.ReportMetric(ms(lat[len(lat)/2]), "median-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(mean(lat))/float64(mean(base)), "x-rescan")
	b.ReportMetric(ms(mean(base)), "rescan-mean-ms")
}

// BenchmarkPollIdleCPU measures what the default re-read costs while
// nothing changes: the CPU time the process spends over two seconds
// watching 64 real sysfs attributes (kernfs makes their content on each
// read, as for badblocks), as a fraction of one core, against the same
// two seconds with the re-read off, measured in the same run.
//
//	go test ./service/sysfswatch -run '^$' -bench PollIdleCPU -benchtime 1x -count 3
func BenchmarkPollIdleCPU(b *testing.B) {
	files := realAttrs(b, 64)
	run := func(poll time.Duration) float64 {
		w, err := New(Options{Rescan: time.Hour, Poll: poll})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		for _, f := range files {
			if err := w.Add(f); err != nil {
				b.Fatal(err)
			}
		}
		for range files {
			<-w.Changes()
		}
		const span = 2 * time.Second
		before := cpuTime(b)
		time.Sleep(span)
		return float64(cpuTime(b)-before) / float64(span)
	}
	var on, off float64
	for range b.N {
		on += run(0)
		off += run(-1)
	}
	n := float64(b.N)
	b.ReportMetric(100*on/n, "cpu%-poll")
	b.ReportMetric(100*off/n, "cpu%-nopoll")
	b.ReportMetric(100*(on-off)/n/float64(len(files)), "cpu%-per-file")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mean(d []time.Duration) time.Duration {
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(len(d))
}

func fakeBadblocksB(b *testing.B, disk string) string {
	p := filepath.Join(b.TempDir(), "sys", "block", disk, "badblocks")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// realAttrs returns n small, readable sysfs attributes of block devices
// (several per device, repeated paths allowed to reach n are not: the
// watcher would merge them), or skips.
func realAttrs(b *testing.B, n int) []string {
	var out []string
	disks, _ := filepath.Glob("/sys/block/*")
	for _, attr := range []string{"size", "ro", "removable", "hidden", "inflight", "stat", "capability", "alignment_offset", "discard_alignment", "ext_range", "range", "diskseq", "events", "events_async", "events_poll_msecs", "dev"} {
		for _, d := range disks {
			p := filepath.Join(d, attr)
			if fd, _, err := openRegular(p); err == nil {
				unix.Close(fd)
				out = append(out, p)
			}
			if len(out) == n {
				return out
			}
		}
	}
	b.Skipf("only %d readable block device attributes in /sys (%s)", len(out), strings.Join(out, " "))
	return nil
}

func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
