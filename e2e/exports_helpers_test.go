package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
)

// exportSandbox is a sandbox whose daemon exports its devices: the mount,
// the links and the NBD socket in the sandbox's directory (no /dev/mapper
// links: the tests must not touch the machine's).
type exportSandbox struct {
	*sandbox
	d *daemon
}

func newExportSandbox(t *testing.T, tools ...string) *exportSandbox {
	t.Helper()
	requireRoot(t)
	for _, c := range tools {
		testenv.NeedCommand(t, c)
	}
	s := newSandbox(t)
	s.env = append(s.env, "DAXSTACK_NO_EXPORTS=0")
	return &exportSandbox{sandbox: s}
}

func (s *exportSandbox) exportArgs() []string {
	return []string{"--no-uevents", "--mount", s.path("dev"), "--links", s.path("links"),
		"--mapper-links", "off", "--nbd-socket", s.path("nbd.sock")}
}

// start starts the daemon with the exports.
func (s *exportSandbox) start(args ...string) {
	s.t.Helper()
	s.d = s.startDaemon(append(s.exportArgs(), args...)...)
}

// link is /dev/daxstack/NAME of the sandbox.
func (s *exportSandbox) link(name string) string { return s.path(filepath.Join("links", name)) }

// uri is the NBD URI of a device.
func (s *exportSandbox) uri(name string) string {
	return fmt.Sprintf("nbd+unix:///%s?socket=%s", name, s.path("nbd.sock"))
}

// tryRun runs daxstack and returns its stdout, stderr and error.
func (s *exportSandbox) tryRun(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	c := s.cmd(args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return out.String(), errb.String(), err
}

// sh runs a command, failing the test if it fails, and returns its
// output.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mountFS mounts dev on dir, unmounting it at the end of the test.
func mountFS(t *testing.T, dev, dir string, opts ...string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	sh(t, "mount", append(opts, dev, dir)...)
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

func umountFS(t *testing.T, dir string) {
	t.Helper()
	sh(t, "umount", dir)
}

// dropCaches drops the page cache, so that the next read of a file goes
// to the device.
func dropCaches(t *testing.T) {
	t.Helper()
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
}

// tree writes files of random sizes and contents under dir and returns
// their checksums by relative path.
func writeTree(t *testing.T, dir string, seed uint64, n int) map[string]string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	sums := map[string]string{}
	for i := 0; i < n; i++ {
		rel := filepath.Join(fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%03d", i))
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := make([]byte, 4096+r.IntN(256<<10))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		sums[rel] = hex.EncodeToString(h[:])
	}
	sh(t, "sync")
	return sums
}

// verifyTree checks every file's checksum; skip names files expected to
// fail.
func verifyTree(t *testing.T, dir string, sums map[string]string, skip string) {
	t.Helper()
	for rel, want := range sums {
		if rel == skip {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("read %s: %v", rel, err)
			continue
		}
		h := sha256.Sum256(b)
		if got := hex.EncodeToString(h[:]); got != want {
			t.Errorf("%s: checksum %s, want %s", rel, got, want)
		}
	}
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
