package testdev

import (
	"os"
	"testing"

	"github.com/daxstack/daxstack/internal/testenv"
)

// NeedFUSE skips t (or fails it, under DAXSTACK_REQUIRE_ROOT=1) unless it
// runs as root with /dev/fuse.
func NeedFUSE(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Unavailable(t, "needs FUSE: "+err.Error())
	}
}

// NeedLoop is NeedFUSE and the loop driver.
func NeedLoop(t testing.TB) {
	t.Helper()
	NeedFUSE(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Unavailable(t, "needs the loop driver: "+err.Error())
	}
}
