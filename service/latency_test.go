package service_test

// Delivery latency through the daemon: an injection through the socket to
// the event's arrival at a holder's stream. The target is a p99 of 5 ms at
// 1000 events/s:
//
//	go test ./service -run '^$' -bench Latency -benchtime 3000x -count 3

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/service"
	"github.com/daxstack/daxstack/store"
)

// latencyStride separates the injected sectors so that no two poisoned
// sectors coalesce: every injection is a new extent on the leaf.
const latencyStride = 4

// BenchmarkDeliveryLatency injects one bad sector per iteration, paced at
// 1000 per second, through a service.Client into a linear device held by
// a subscriber, and measures from the start of each inject call to the
// arrival of its media-error event at the holder. It reports the
// percentiles with, as baselines from the same run, the inject calls'
// own durations, the round trip of a no-op call ("version") and one bbolt
// commit of an event (the fsync every command pays), and the CPU time of
// the whole process (daemon, client and holder) per event. With
// watchers=16, sixteen more subscribers follow every event, as watchers
// and holders of other slices would.
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, watchers := range []int{0, 16} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) { benchDelivery(b, watchers) })
	}
}

func benchDelivery(b *testing.B, watchers int) {
	d := startDaemon(b, "", service.Config{})
	sectors := int64(b.N*latencyStride + 1024)
	leaf := d.leaf(b, "leaf.img", sectors)
	cl := d.client(b)
	create(b, cl, "top", fmt.Sprintf("0 %d linear %s 0", sectors, leaf))
	sub, err := service.Hold(d.sock, lastSeq(b, cl), []string{"top"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	for range watchers {
		w, err := service.Subscribe(d.sock, lastSeq(b, cl), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		go func() {
			for ev := range w.Events() {
				w.Ack(ev.Seq)
			}
		}()
	}

	// The holder: timestamps each event and acknowledges it.
	arrived := make(chan map[uint64]time.Time, 1)
	go func() {
		at := map[uint64]time.Time{}
		for ev := range sub.Events() {
			now := time.Now()
			for x := range ev.Ranges.Extents() {
				at[x.Start] = now
			}
			sub.Ack(ev.Seq)
			if len(at) == b.N {
				break
			}
		}
		arrived <- at
	}()

	started := make([]time.Time, b.N)
	returned := make([]time.Duration, b.N)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	begin := time.Now()
	for i := range b.N {
		if wait := time.Until(begin.Add(time.Duration(i) * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		sector := uint64(i * latencyStride)
		started[i] = time.Now()
		call(b, cl, "inject", control.RangeReq{Name: "top", Sector: sector, Count: 1}, nil)
		returned[i] = time.Since(started[i])
	}
	var at map[uint64]time.Time
	select {
	case at = <-arrived:
	case <-time.After(30 * time.Second):
		b.Fatalf("events missing after 30 s: stream ended with %v", sub.Err())
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	cpu := cpuTime(b) - cpu0

	lat := make([]time.Duration, b.N)
	for i := range b.N {
		t, ok := at[uint64(i*latencyStride)]
		if !ok {
			b.Fatalf("no event for injection %d", i)
		}
		lat[i] = t.Sub(started[i])
	}
	version := roundTrips(b, cl, 1000)
	commit := commits(b, filepath.Join(d.dir, "baseline.db"), 200)

	p := percentiles(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(ms(p[50]), "p50-ms")
	b.ReportMetric(ms(p[90]), "p90-ms")
	b.ReportMetric(ms(p[99]), "p99-ms")
	rp := percentiles(returned)
	b.ReportMetric(ms(rp[50]), "inject-p50-ms")
	b.ReportMetric(ms(rp[99]), "inject-p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/event")
	vp, cp := percentiles(version), percentiles(commit)
	b.ReportMetric(ms(vp[50]), "version-p50-ms")
	b.ReportMetric(ms(vp[99]), "version-p99-ms")
	b.ReportMetric(ms(cp[50]), "commit-p50-ms")
	b.ReportMetric(ms(cp[99]), "commit-p99-ms")
	b.ReportMetric(float64(p[99])/float64(cp[50]), "p99/commit")
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// roundTrips times n no-op calls through c.
func roundTrips(tb testing.TB, c *service.Client, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		t := time.Now()
		if _, err := c.Call(context.Background(), "version", nil); err != nil {
			tb.Fatal(err)
		}
		out[i] = time.Since(t)
	}
	return out
}

// commits times n bbolt commits of one event each on a database of its own
// in the same directory.
func commits(tb testing.TB, path string, n int) []time.Duration {
	db, err := store.Open(path, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	ev := rmapchain.Event{Kind: rmapchain.MediaError, Device: "top", Time: time.Now()}
	out := make([]time.Duration, n)
	for i := range out {
		t := time.Now()
		err := db.Update(func(tx *store.Tx) error {
			_, err := tx.AppendEvents([]rmapchain.Event{ev})
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = time.Since(t)
	}
	return out
}

// percentiles returns the 50th, 90th and 99th percentiles of ds (nearest
// rank), indexed by percent.
func percentiles(ds []time.Duration) map[int]time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	out := map[int]time.Duration{}
	for _, p := range []int{50, 90, 99} {
		i := (len(s)*p + 99) / 100
		out[p] = s[max(i-1, 0)]
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var _ = json.Marshal
