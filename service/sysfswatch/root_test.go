package sysfswatch

import (
	"os"
	"os/exec"
	"testing"
)

// requireRootEnv names the environment variable that turns the skips of
// tests needing root or real devices into failures (CI sets it).
const requireRootEnv = "DAXSTACK_REQUIRE_ROOT"

// needRoot skips t unless it runs as root, or fails it when
// DAXSTACK_REQUIRE_ROOT=1.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root")
	}
}

// needCommand is needRoot for a program on $PATH.
func needCommand(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		unavailable(t, "needs "+name+": "+err.Error())
	}
}

// unavailable skips t for want of why, or fails it when
// DAXSTACK_REQUIRE_ROOT=1.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(requireRootEnv) == "1" {
		t.Fatalf("%s (and %s=1)", why, requireRootEnv)
	}
	t.Skipf("%s; set %s=1 to fail instead of skipping", why, requireRootEnv)
}
