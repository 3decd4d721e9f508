package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A real filesystem on /dev/daxstack/top, where top is linear over a
// stripe of two loop leaves plus a file leaf: mkfs, mount, files with
// checksums, remount and verify, a failure range under one file's blocks
// (found with filefrag) failing that file alone and sector-exact, a
// good-range healing it, a table reloaded under the mounted filesystem,
// fsck clean at the end.
func TestExportsFilesystems(t *testing.T) {
	for _, fs := range []struct {
		name, mkfs, fsck string
		mkfsArgs         []string
		fsckArgs         []string
	}{
		{"ext4", "mkfs.ext4", "e2fsck", []string{"-q", "-F"}, []string{"-fn"}},
		{"xfs", "mkfs.xfs", "xfs_repair", []string{"-q", "-f"}, []string{"-n"}},
	} {
		t.Run(fs.name, func(t *testing.T) {
			s := newExportSandbox(t, fs.mkfs, fs.fsck, "filefrag")
			const leafSectors = 327680 // 160 MiB each: XFS wants 300 MB
			a := losetup(t, s.file("a.img", leafSectors*512), "")
			b := losetup(t, s.file("b.img", leafSectors*512), "")
			c := s.file("c.img", 65536*512)
			s.start()
			s.run("create", "s0", "--table", fmt.Sprintf("0 %d striped 2 128 %s 0 %s 0", 2*leafSectors, a, b))
			table := fmt.Sprintf("0 %d linear s0 0\n%d 65536 linear %s 0", 2*leafSectors, 2*leafSectors, c)
			s.run("create", "top", "--table", table)
			dev := s.link("top")
			if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
				t.Fatalf("%s after create: %v %v", dev, fi, err)
			}
			if got := strings.TrimSpace(sh(t, "blockdev", "--getsz", dev)); got != strconv.Itoa(2*leafSectors+65536) {
				t.Fatalf("blockdev --getsz %s = %s", dev, got)
			}
			sh(t, fs.mkfs, append(fs.mkfsArgs, dev)...)
			mnt := s.path("mnt")
			mountFS(t, dev, mnt)
			sums := writeTree(t, mnt, 7, 40)
			umountFS(t, mnt)
			mountFS(t, dev, mnt)
			verifyTree(t, mnt, sums, "")

			// The stack is busy while mounted.
			if _, stderr, err := s.tryRun("remove", "top"); err == nil {
				t.Fatalf("remove of a mounted device succeeded")
			} else if !strings.Contains(stderr, "busy") {
				t.Errorf("remove of a mounted device: %s", stderr)
			}

			// The file's bytes are on the leaf where map says.
			victim := "d1/f005"
			vpath := filepath.Join(mnt, victim)
			start, count := firstExtent(t, vpath)
			if count < 16 {
				t.Fatalf("first extent of %s is %d sectors; the test wants 16", victim, count)
			}
			content, err := os.ReadFile(vpath)
			if err != nil {
				t.Fatal(err)
			}
			leaf, leafSector := s.leafOf(t, "top", start+8)
			onLeaf := make([]byte, 4096)
			if f, err := os.Open(leaf); err != nil {
				t.Fatal(err)
			} else {
				f.ReadAt(onLeaf, int64(leafSector)*512)
				f.Close()
			}
			if string(onLeaf) != string(content[4096:8192]) {
				t.Errorf("%s bytes 4096..8192 are not at %s sector %d, where map puts top sector %d", victim, leaf, leafSector, start+8)
			}

			// A failure range under the file's first 8 sectors: exactly
			// those fail.
			s.run("error-range", "top", strconv.FormatUint(start, 10), "8")
			dropCaches(t)
			if _, err := os.ReadFile(vpath); !errors.Is(err, syscall.EIO) {
				t.Errorf("read %s over an error range: %v, want EIO", victim, err)
			}
			if err := directRead(vpath, 0); !errors.Is(err, syscall.EIO) {
				t.Errorf("direct read of %s's first 4 KiB (bad): %v, want EIO", victim, err)
			}
			if err := directRead(vpath, 4096); err != nil {
				t.Errorf("direct read of %s's second 4 KiB (good): %v", victim, err)
			}
			verifyTree(t, mnt, sums, victim)
			s.run("good-range", "top", strconv.FormatUint(start, 10), "8")
			verifyTree(t, mnt, sums, "")

			// A new table (the same mapping) under the mounted filesystem.
			s.run("suspend", "--nolockfs", "top")
			s.run("load", "top", "--table", table)
			s.run("resume", "top")
			more := writeTree(t, filepath.Join(mnt, "more"), 8, 5)
			dropCaches(t)
			verifyTree(t, mnt, sums, "")
			verifyTree(t, filepath.Join(mnt, "more"), more, "")

			umountFS(t, mnt)
			sh(t, fs.fsck, append(fs.fsckArgs, dev)...)
			s.run("remove", "top")
			if _, err := os.Lstat(dev); !os.IsNotExist(err) {
				t.Errorf("%s after remove: %v", dev, err)
			}
			s.run("remove", "s0")
		})
	}
}

// directRead reads 4 KiB of path at off with O_DIRECT (past the page
// cache, to the device).
func directRead(path string, off int64) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer syscall.Munmap(buf)
	_, err = syscall.Pread(fd, buf, off)
	return err
}

// leafOf returns the leaf and its sector where sector of dev lives
// (daxstack map, its last level).
func (s *exportSandbox) leafOf(t *testing.T, dev string, sector uint64) (string, uint64) {
	t.Helper()
	var rep struct {
		Report []struct {
			Map []struct {
				Child       string `json:"child"`
				ChildSector uint64 `json:"child_sector"`
				Leaf        bool   `json:"leaf"`
			} `json:"map"`
		} `json:"report"`
	}
	out := s.run("map", "--reportformat", "json", dev, strconv.FormatUint(sector, 10), "8")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Report) == 0 || len(rep.Report[0].Map) == 0 {
		t.Fatalf("map %s %d: %v\n%s", dev, sector, err, out)
	}
	last := rep.Report[0].Map[len(rep.Report[0].Map)-1]
	if !last.Leaf {
		t.Fatalf("map %s %d does not end on a leaf:\n%s", dev, sector, out)
	}
	leaf := last.Child
	if regexp.MustCompile(`^\d+:\d+$`).MatchString(leaf) {
		b, err := os.ReadFile("/sys/dev/block/" + leaf + "/uevent")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^DEVNAME=(.*)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no DEVNAME for %s", leaf)
		}
		leaf = "/dev/" + string(m[1])
	}
	return leaf, last.ChildSector
}

// firstExtent returns the first extent of a file in 512-byte sectors of
// its filesystem's device (filefrag -b512 -v).
func firstExtent(t *testing.T, path string) (start, count uint64) {
	t.Helper()
	out := sh(t, "filefrag", "-b512", "-v", path)
	re := regexp.MustCompile(`(?m)^\s*0:\s*0\.\.\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+):`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no first extent in filefrag output:\n%s", out)
	}
	start, _ = strconv.ParseUint(m[1], 10, 64)
	count, _ = strconv.ParseUint(m[2], 10, 64)
	return start, count
}
