package dax

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const sampleMountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
61 22 7:3 / /mnt/with\040space rw,relatime shared:30 - ext4 /dev/loop3 rw
62 22 259:1 /sub /srv/data rw - xfs /dev/pmem0p1 rw
63 22 7:3 / /mnt/again rw - ext4 /dev/loop3 rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{{"254:0", "/"}, {"0:21", "/proc"}, {"7:3", "/mnt/with space"}, {"259:1", "/srv/data"}, {"7:3", "/mnt/again"}}
	if !slices.Equal(ms, want) {
		t.Errorf("got %q\nwant %q", ms, want)
	}
	for _, bad := range []string{"1 2 3\n", "1 2 x:y / / rw - ext4 /dev/x rw\n"} {
		if _, err := parseMountinfo(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for in, out := range map[string]string{`a\040b`: "a b", `\134`: `\`, `a\0`: `a\0`, `\999`: `\999`, `x\011y\012`: "x\ty\n"} {
		if got := unescapeOctal(in); got != out {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, out)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(sampleMountinfo))
	f.Add([]byte("1 2 7:0 / /\\1 - x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseMountinfo(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, m := range ms {
			if _, _, ok := parseDevno(m.devno); !ok {
				t.Fatalf("device %q accepted", m.devno)
			}
		}
	})
}

// TestMountsOfPartitions: a device whose partition is mounted is
// mounted (a fake sysfs directory with a partition, a fake mountinfo).
func TestMountsOfPartitions(t *testing.T) {
	dir := t.TempDir()
	sys := filepath.Join(dir, "259:0")
	for p, c := range map[string]string{"pmem0p1/partition": "1", "pmem0p1/dev": "259:1", "queue/x": ""} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mi := filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(mi, []byte(sampleMountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	old := mountinfoPath
	mountinfoPath = mi
	t.Cleanup(func() { mountinfoPath = old })
	if got := mountsOfDevice(sys, "259:0"); !slices.Equal(got, []string{"/srv/data on pmem0p1"}) {
		t.Errorf("pmem0: %q", got)
	}
	if got := mountsOfDevice(filepath.Join(dir, "none"), "7:3"); !slices.Equal(got, []string{"/mnt/with space", "/mnt/again"}) {
		t.Errorf("loop3: %q", got)
	}
}
