package devfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/internal/testenv"
)

// The kernel enforces owner, group and mode (default_permissions with
// allow_other): a process in the group reads and writes, others get
// EACCES, and nothing else reaches the server.
func TestPermissionsAreTheKernels(t *testing.T) {
	testenv.NeedCommand(t, "dd")
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	// Let other users reach the mount through the test's directories.
	for p := filepath.Dir(fs.Dir()); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	run := func(uid, gid uint32, groups []uint32, args ...string) (string, error) {
		cmd := exec.Command("dd", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	read := []string{"if=" + fs.Path("a"), "of=/dev/null", "bs=512", "count=1"}
	write := []string{"if=/dev/zero", "of=" + fs.Path("a"), "bs=512", "count=1", "conv=notrunc"}

	before := d.Counts()
	for _, args := range [][]string{read, write} {
		out, err := run(nobody, nobody, nil, args...)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("dd %v as nobody: %v\n%s", args, err, out)
		}
	}
	if c := d.Counts(); c != before {
		t.Errorf("refused opens reached the device: %+v -> %+v", before, c)
	}
	for _, args := range [][]string{read, write} {
		if out, err := run(nobody, nobody, []uint32{testGroup}, args...); err != nil {
			t.Errorf("dd %v as nobody in the group: %v\n%s", args, err, out)
		}
		if out, err := run(nobody, testGroup, nil, args...); err != nil {
			t.Errorf("dd %v as nobody with the group as its own: %v\n%s", args, err, out)
		}
	}
	if c := d.Counts(); c.Reads != before.Reads+2 || c.Writes != before.Writes+2 {
		t.Errorf("counts %+v, want 2 reads and 2 writes more than %+v", c, before)
	}
}
