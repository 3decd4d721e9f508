//go:build guest

package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The NVDIMM regions vm-test.sh gives the guest: three of 256 MiB with
// label space. Each test makes the namespaces it needs and destroys them
// when it ends, so every test starts from three empty regions.
const (
	region0 = "region0"
	region1 = "region1"
	region2 = "region2"
)

// namespace is what `ndctl list` says about a namespace.
type namespace struct {
	Dev       string     `json:"dev"`  // namespace0.0
	Mode      string     `json:"mode"` // raw, fsdax, devdax
	Size      uint64     `json:"size"` // bytes
	UUID      string     `json:"uuid"` // for fsdax and devdax: the pfn or dax device's UUID (see TestNamespaceIdentity)
	Name      string     `json:"name"`
	Blockdev  string     `json:"blockdev"` // pmem0 (raw, fsdax)
	Chardev   string     `json:"chardev"`  // dax0.0 (devdax)
	Badblocks []badblock `json:"badblocks"`
}

// badblock is one entry of `ndctl list --media-errors`, in 512-byte
// sectors of the namespace's block device.
type badblock struct {
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
}

// node is the namespace's device node: /dev/pmemN or /dev/daxX.Y.
func (n *namespace) node() string {
	if n.Chardev != "" {
		return "/dev/" + n.Chardev
	}
	return "/dev/" + n.Blockdev
}

// ndctl runs ndctl and returns its stdout; a failure fails t.
func ndctl(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := tryNdctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryNdctl(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	c := exec.Command("ndctl", args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("ndctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// createNamespace makes a namespace in region of mode and size (ndctl's
// words: fsdax, devdax, raw; 64M) with extra create-namespace arguments,
// waits for its device node and returns it. It is destroyed when the test
// ends, under whatever name it has then (see recreate).
func createNamespace(t testing.TB, region, mode, size string, extra ...string) *namespace {
	t.Helper()
	n := makeNamespace(t, region, mode, size, extra...)
	t.Cleanup(func() {
		if n.Dev == "" {
			return
		}
		if _, err := tryNdctl("destroy-namespace", "-f", n.Dev); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return n
}

func makeNamespace(t testing.TB, region, mode, size string, extra ...string) *namespace {
	t.Helper()
	out := ndctl(t, append([]string{"create-namespace", "-r", region, "-m", mode, "-s", size}, extra...)...)
	var made struct {
		Dev string `json:"dev"`
	}
	if err := json.Unmarshal(out, &made); err != nil || made.Dev == "" {
		t.Fatalf("create-namespace printed %q: %v", out, err)
	}
	n := listNamespace(t, made.Dev)
	waitFor(t, 10*time.Second, n.node()+" to appear", func() bool {
		_, err := os.Stat(n.node())
		return err == nil
	})
	return n
}

// destroy destroys the namespace now (ndctl destroy-namespace -f).
func (n *namespace) destroy(t testing.TB) {
	t.Helper()
	ndctl(t, "destroy-namespace", "-f", n.Dev)
	n.Dev = ""
}

// recreate makes the namespace again in region (after destroy), with the
// same mode and size and the extra arguments given, and points n at it so
// that the cleanup destroys the new one.
func (n *namespace) recreate(t testing.TB, region string, size string, extra ...string) {
	t.Helper()
	*n = *makeNamespace(t, region, n.Mode, size, extra...)
}

// listNamespace returns `ndctl list -n dev --media-errors`.
func listNamespace(t testing.TB, dev string) *namespace {
	t.Helper()
	out := bytes.TrimSpace(ndctl(t, "list", "-n", dev, "--media-errors"))
	// ndctl prints one object alone, several as an array.
	if len(out) > 0 && out[0] == '{' {
		out = append(append([]byte{'['}, out...), ']')
	}
	var ns []namespace
	if err := json.Unmarshal(out, &ns); err != nil {
		t.Fatalf("ndctl list -n %s: %v\n%s", dev, err, out)
	}
	if len(ns) != 1 || ns[0].Dev != dev {
		t.Fatalf("ndctl list -n %s: want that one namespace, got %s", dev, out)
	}
	return &ns[0]
}

// sysfs reads a sysfs attribute, trimmed; a failure fails t.
func sysfs(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// blockAttr is an attribute of the namespace's block device,
// /sys/block/pmemN/ATTR.
func (n *namespace) blockAttr(t testing.TB, attr string) string {
	t.Helper()
	return sysfs(t, filepath.Join("/sys/block", n.Blockdev, attr))
}

// injectBadblocks writes "start count" to the namespace's block device's
// badblocks file, as a user or a tool would (the kernel then fails reads
// of those sectors; it does not sysfs_notify the file).
func (n *namespace) injectBadblocks(t testing.TB, start, count uint64) {
	t.Helper()
	f := filepath.Join("/sys/block", n.Blockdev, "badblocks")
	if err := os.WriteFile(f, fmt.Appendf(nil, "%d %d\n", start, count), 0); err != nil {
		t.Fatalf("write %s: %v", f, err)
	}
}

// devno is "major:minor" of the namespace's device, from sysfs.
func (n *namespace) devno(t testing.TB) string {
	t.Helper()
	if n.Chardev != "" {
		return sysfs(t, filepath.Join("/sys/bus/dax/devices", n.Chardev, "dev"))
	}
	return n.blockAttr(t, "dev")
}

// waitFor polls cond every 20 ms for up to d; it fails t naming what
// did not happen.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
