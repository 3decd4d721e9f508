package testenv

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ThreadTime returns the calling thread's CPU time. The caller locks its
// goroutine to the thread (runtime.LockOSThread) around what it times, so
// that time spent descheduled on a shared machine counts for nobody.
func ThreadTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// Turns runs a and base in alternating rounds of batch operations, b.N
// rounds in all, and returns the ns per operation of each in the thread's
// CPU time (b's own ns/op is a round of both): a benchmark and its
// baseline measured in the same run, under the same load.
func Turns(b *testing.B, batch int, a, base func(i int)) (aNs, baseNs float64) {
	b.ReportAllocs()
	b.ResetTimer()
	aNs, baseNs = TurnsAfter(b.N, batch, a, base)
	b.StopTimer()
	return aNs, baseNs
}

// TurnsAfter is Turns outside a benchmark's own loop: rounds rounds of
// batch operations of each, taking turns.
func TurnsAfter(rounds, batch int, a, base func(i int)) (aNs, baseNs float64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ta, tb time.Duration
	for i := range rounds {
		t0 := ThreadTime()
		for j := range batch {
			a(i*batch + j)
		}
		t1 := ThreadTime()
		for j := range batch {
			base(i*batch + j)
		}
		ta += t1 - t0
		tb += ThreadTime() - t1
	}
	if rounds == 0 || batch == 0 {
		return 0, 0
	}
	n := float64(rounds) * float64(batch)
	return float64(ta.Nanoseconds()) / n, float64(tb.Nanoseconds()) / n
}
