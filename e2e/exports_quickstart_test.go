package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// quickstart --daemon: a filesystem on a stack, a leaf's media error and
// an error range reaching its reader, and nothing left behind.
func TestExportsQuickstartDaemon(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	out := s.run("quickstart", "--daemon")
	for _, want := range []string{
		"$ mkfs.ext4 -q -F links/top",
		"translated up the stack: top's bad sectors",
		"device top is in use: mounted on",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("quickstart --daemon output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "Input/output error"); n != 2 {
		t.Errorf("%d reads failed with EIO, want 2 (the leaf's poison, the error range):\n%s", n, out)
	}
	if n := strings.Count(out, "\nhello from a daxstack filesystem"); n != 2 {
		t.Errorf("%d reads succeeded after clearing, want 2:\n%s", n, out)
	}
	if b, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(b), "daxstack-quickstart") {
		t.Errorf("loop devices left behind:\n%s", b)
	}
}
