// Package testenv is what the tests of several packages share: the gate of
// tests that need root or real devices, and the same-run baseline that
// every benchmark reports its ratio against. It is a package of its own so
// that there is one definition of each, not one copy per package.
package testenv

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireRootEnv names the environment variable that turns the skips of
// tests needing root or real devices into failures (CI sets it to 1).
const RequireRootEnv = "DAXSTACK_REQUIRE_ROOT"

// NeedRoot skips t unless it runs as root, or fails it when
// DAXSTACK_REQUIRE_ROOT=1.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// NeedCommand is NeedRoot for a program on $PATH.
func NeedCommand(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Unavailable(t, "needs "+name+": "+err.Error())
	}
}

// Unavailable skips t for want of why, or fails it when
// DAXSTACK_REQUIRE_ROOT=1.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("%s (and %s=1)", why, RequireRootEnv)
	}
	t.Skipf("%s; set %s=1 to fail instead of skipping", why, RequireRootEnv)
}

// Paired returns the ns/op of fn measured right after the benchmark's own
// loop, for about as long as that loop ran (at least 50 ms, at most 2 s),
// so that both figures see the same machine: on a shared machine a
// baseline measured at another moment can be off by half.
func Paired(b *testing.B, fn func(i int)) float64 {
	want := min(max(b.Elapsed(), 50*time.Millisecond), 2*time.Second)
	var total time.Duration
	ops := 0
	for n := 1; total < want; n *= 2 {
		start := time.Now()
		for i := range n {
			fn(ops + i)
		}
		total += time.Since(start)
		ops += n
	}
	return float64(total.Nanoseconds()) / float64(ops)
}

// NsPerOp is the benchmark's own time per iteration so far.
func NsPerOp(b *testing.B) float64 {
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}
