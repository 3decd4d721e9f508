package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestQuickstart runs the README's first command, the embedded
// quickstart, as an unprivileged user (root's tests drop to nobody): its
// translated bad ranges are the kernel oracle's (leaf1 300+4 is s0 348 and
// top 324; top's error segment 1000+16), a read over the bad sector fails
// with the README's words, the multi-line table is shown in a form that
// works when pasted, and it leaves nothing behind.
func TestQuickstart(t *testing.T) {
	// Directories nobody can reach (t.TempDir's parent is 0700): the
	// binary, and the TMPDIR the quickstart works in.
	root, err := os.MkdirTemp("", "daxstack-quickstart-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	tmp := filepath.Join(root, "tmp")
	exe := filepath.Join(root, "daxstack")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, tmp} {
		if err := os.Chmod(d, map[bool]os.FileMode{true: 0o755, false: 0o777}[d == root]); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "quickstart")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + tmp, "HOME=" + tmp}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"$ daxstack create top --table $'0 1000 linear s0 24\\n1000 16 error\\n1016 200 linear leaf2.img 40'\n",
		"$ daxstack badblocks s0\n348 4\n",
		"$ daxstack badblocks top\n324 4\n1000 16\n",
		"top sector 324: Input/output error (dax: ",
		"leaf1.img: media error at sectors 300+1: input/output error)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, text)
		}
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("quickstart left %d entries in TMPDIR (%s...)", len(left), left[0].Name())
	}
}
