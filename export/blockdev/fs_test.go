package blockdev

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Real filesystems on the block device of an export: made, filled,
// remounted, verified and checked clean; their bytes are on the device
// where the filesystem says; a bad range under one file fails that file
// alone, sector-exact, and reads again once cleared.
func TestFilesystems(t *testing.T) {
	for _, fc := range []struct {
		fstype string
		size   int64 // mkfs.xfs refuses under 300 MB
		mkfs   []string
		check  []string
	}{
		{"ext4", 64 << 20, []string{"mkfs.ext4", "-q", "-F"}, []string{"fsck.ext4", "-f", "-n"}},
		{"xfs", 300 << 20, []string{"mkfs.xfs", "-q", "-f"}, []string{"xfs_repair", "-n"}},
	} {
		t.Run(fc.fstype, func(t *testing.T) {
			r := newRig(t)
			d, x := r.add("top", fc.size, false)
			dev := x.Links[0]
			run(t, fc.mkfs[0], append(fc.mkfs[1:], dev)...)
			mnt := mountFS(t, dev, fc.fstype, 0)
			sums := writeTree(t, mnt)
			umount(t, mnt)
			run(t, fc.check[0], append(fc.check[1:], dev)...)
			mnt = mountFS(t, dev, fc.fstype, 0)
			verifyTree(t, mnt, sums)

			// The file's bytes are where FIEMAP says, on the device.
			big := filepath.Join(mnt, "big")
			data, err := os.ReadFile(big)
			if err != nil {
				t.Fatal(err)
			}
			exts := extents(t, big)
			if len(exts) == 0 {
				t.Fatal("no extents for big")
			}
			for _, e := range exts {
				onDev := make([]byte, e.length*512)
				if _, err := d.File().ReadAt(onDev, e.physical*512); err != nil {
					t.Fatal(err)
				}
				want := data[e.logical*512 : min(int64(len(data)), (e.logical+e.length)*512)]
				if !bytes.Equal(onDev[:len(want)], want) {
					t.Errorf("extent %+v: the device's bytes are not the file's", e)
				}
			}

			// A bad sector under big: EIO for it alone.
			bad := exts[0].physical + 3
			d.SetBad(bad, 1)
			for k, eio := range map[int]bool{2: false, 3: true, 4: false} {
				err := ddDirect(t, big, k)
				if eio != (err != nil) {
					t.Errorf("O_DIRECT read of big's sector %d (device sector %d bad): %v, want EIO %v", k, bad, err, eio)
				}
			}
			umount(t, mnt) // drop the cached pages
			mnt = mountFS(t, dev, fc.fstype, 0)
			if _, err := os.ReadFile(filepath.Join(mnt, "big")); !errors.Is(err, syscall.EIO) {
				t.Errorf("read of big over a bad sector: %v, want EIO", err)
			}
			delete(sums, "big")
			verifyTree(t, mnt, sums)
			d.SetGood(bad, 1)
			if got, err := os.ReadFile(filepath.Join(mnt, "big")); err != nil || !bytes.Equal(got, data) {
				t.Errorf("read of big after the clear: %v", err)
			}
			umount(t, mnt)
			run(t, fc.check[0], append(fc.check[1:], dev)...)
		})
	}
}

// writeTree fills dir with files of random sizes in nested directories and
// a 4 MiB file "big", and returns their checksums by relative path.
func writeTree(t *testing.T, dir string) map[string][sha256.Size]byte {
	t.Helper()
	rnd := rand.New(rand.NewSource(11))
	sums := map[string][sha256.Size]byte{}
	put := func(rel string, n int) {
		p := make([]byte, n)
		rnd.Read(p)
		full := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, p, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[rel] = sha256.Sum256(p)
	}
	for i := 0; i < 40; i++ {
		put(fmt.Sprintf("d%d/e%d/f%d", i%4, i%3, i), rnd.Intn(300<<10)+1)
	}
	put("big", 4<<20)
	return sums
}

func verifyTree(t *testing.T, dir string, sums map[string][sha256.Size]byte) {
	t.Helper()
	for rel, want := range sums {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if sha256.Sum256(b) != want {
			t.Errorf("%s: checksum differs", rel)
		}
	}
}

type extent struct{ logical, physical, length int64 } // 512-byte units

var extentLine = regexp.MustCompile(`^\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+):`)

// extents returns a file's extents as `filefrag -v -b512` prints them.
func extents(t *testing.T, path string) []extent {
	t.Helper()
	var out []extent
	for _, line := range strings.Split(run(t, "filefrag", "-v", "-b512", path), "\n") {
		m := extentLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var e extent
		e.logical, _ = strconv.ParseInt(m[1], 10, 64)
		e.physical, _ = strconv.ParseInt(m[2], 10, 64)
		e.length, _ = strconv.ParseInt(m[3], 10, 64)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].logical < out[j].logical })
	return out
}

// ddDirect reads sector k of the file with O_DIRECT.
func ddDirect(t *testing.T, path string, k int) error {
	t.Helper()
	out, err := exec.Command("dd", "if="+path, "of=/dev/null", "bs=512", "count=1", "skip="+strconv.Itoa(k), "iflag=direct").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	return err
}
