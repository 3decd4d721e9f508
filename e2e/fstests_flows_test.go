package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fstestsLeafSectors is the size of the leaf under the fstests flows:
// 64 MiB, enough for ext4 with a journal.
const fstestsLeafSectors = 131072

// writeSynced creates path with data and fsyncs it and its directory;
// an fsync failure fails the test.
func writeSynced(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", filepath.Dir(path), err)
	}
}

// fileSum is the SHA-256 of a file's bytes.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// randomBytes is n bytes from crypto/rand.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// reloadTable swaps a device's table the way fstests' common/dmflakey
// does: suspend --nolockfs, load, resume.
func (s *exportSandbox) reloadTable(name, table string) {
	s.t.Helper()
	s.run("suspend", "--nolockfs", name)
	s.run("load", name, "--table", table)
	s.run("resume", name)
}

// TestFstestsFlakeyDropWrites is fstests' power-failure flow of
// common/dmflakey on ext4: flakey always up, a first file written and
// fsynced; then flakey with a zero up interval and drop_writes (every
// write acknowledged and dropped), a second file written and fsynced
// (the fsync succeeds), unmount; the original table again, the
// filesystem checks clean and holds the first file with its contents and
// not the second. While down, info's health says so and no sector is bad.
func TestFstestsFlakeyDropWrites(t *testing.T) {
	s := newExportSandbox(t, "mkfs.ext4", "e2fsck")
	leaf := s.file("leaf.img", fstestsLeafSectors*512)
	s.start()
	up := fmt.Sprintf("0 %d flakey %s 0 180 0", fstestsLeafSectors, leaf)
	drop := fmt.Sprintf("0 %d flakey %s 0 0 180 1 drop_writes", fstestsLeafSectors, leaf)
	s.run("create", "fl", "--table", up)
	dev := s.link("fl")
	sh(t, "mkfs.ext4", "-q", "-F", dev)
	mnt := s.path("mnt")
	mountFS(t, dev, mnt)
	// A mounted filesystem is a user of the device, as in the kernel's
	// open count (lvm2 orders its teardown by it).
	if open := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "open", "fl")); open != "1" {
		t.Errorf("open count of fl mounted: %q, want 1", open)
	}

	first := randomBytes(t, 256<<10)
	writeSynced(t, filepath.Join(mnt, "first"), first)

	s.reloadTable("fl", drop)
	// A down interval is a time, not a place: health says down, no
	// sector is bad.
	if got := s.run("info", "-c", "--noheadings", "-o", "health,bad_sectors", "fl"); got != "down:0\n" {
		t.Errorf("info -c -o health,bad_sectors fl while down = %q, want %q", got, "down:0\n")
	}
	if out := s.run("badblocks", "fl"); out != "" {
		t.Errorf("badblocks fl while down = %q, want none", out)
	}
	frozen := fileSum(t, leaf)
	second := randomBytes(t, 256<<10)
	writeSynced(t, filepath.Join(mnt, "second"), second)
	umountFS(t, mnt)
	if open := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "open", "fl")); open != "0" {
		t.Errorf("open count of fl unmounted: %q, want 0", open)
	}
	if fileSum(t, leaf) != frozen {
		t.Errorf("the leaf changed while flakey dropped every write")
	}

	s.reloadTable("fl", up)
	if got := s.run("info", "-c", "--noheadings", "-o", "health", "fl"); got != "ok\n" {
		t.Errorf("info -c -o health fl after the original table = %q, want ok", got)
	}
	if out, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn after the dropped writes: %v\n%s", err, out)
	} else {
		t.Logf("e2fsck -fn after the dropped writes:\n%s", out)
	}
	mountFS(t, dev, mnt)
	if got, err := os.ReadFile(filepath.Join(mnt, "first")); err != nil {
		t.Errorf("first file after the power failure: %v", err)
	} else if !bytes.Equal(got, first) {
		t.Errorf("first file after the power failure: %d bytes, not its contents", len(got))
	}
	if _, err := os.Lstat(filepath.Join(mnt, "second")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second file, written while writes were dropped, after the power failure: %v, want it gone", err)
	}
	umountFS(t, mnt)
	sh(t, "e2fsck", "-fn", dev)
	s.run("remove", "fl")
}

// TestFstestsDustBadBlock is fstests' latent-bad-block flow of
// common/dmdust on ext4: dust in bypass under a filesystem, a block under
// a file added to the list, read failures enabled, the file's read
// failing with EIO once the page cache is dropped; the list as the
// kernel replies it, the block a bad range of the device while enabled
// (badblocks, info's health, a media-error event on enable, none while
// bypassed);
// a direct write through the filesystem over that block clears it and
// the file reads again with its contents (a cleared event, no bad range).
func TestFstestsDustBadBlock(t *testing.T) {
	s := newExportSandbox(t, "mkfs.ext4", "e2fsck", "filefrag", "dd")
	leaf := s.file("leaf.img", fstestsLeafSectors*512)
	s.start()
	s.run("create", "du", "--table", fmt.Sprintf("0 %d dust %s 0 512", fstestsLeafSectors, leaf))
	dev := s.link("du")
	sh(t, "mkfs.ext4", "-q", "-F", dev)
	mnt := s.path("mnt")
	mountFS(t, dev, mnt)
	vpath := filepath.Join(mnt, "victim")
	content := randomBytes(t, 1<<20)
	if err := os.WriteFile(vpath, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "sync")

	// The file's second 4 KiB block, and within it its first sector: a
	// dust block of 512 bytes from the start of the leaf (offset 0).
	start, count := firstExtent(t, vpath)
	if count < 16 {
		t.Fatalf("first extent of the file is %d sectors; the test wants 16", count)
	}
	bad := start + 8
	b := strconv.FormatUint(bad, 10)

	w := s.watch("du")
	s.run("message", "du", "0", "addbadblock", b)
	for _, tc := range []struct{ msg, want string }{
		{"countbadblocks", "countbadblocks: 1 badblock(s) found\n"},
		{"listbadblocks", b + "\n"},
		{"queryblock " + b, "dust_query_block: block " + b + " found in badblocklist\n"},
	} {
		if got := s.run(append([]string{"message", "du", "0"}, strings.Fields(tc.msg)...)...); got != tc.want {
			t.Errorf("message du 0 %s = %q, want %q", tc.msg, got, tc.want)
		}
	}
	// Bypass: the listed block reads, and is no bad range.
	dropCaches(t)
	if got, err := os.ReadFile(vpath); err != nil || !bytes.Equal(got, content) {
		t.Errorf("read of the file while dust is in bypass: %v (%d bytes)", err, len(got))
	}
	if out := s.run("badblocks", "du"); out != "" {
		t.Errorf("badblocks du in bypass = %q, want none", out)
	}

	s.run("message", "du", "0", "enable")
	ev := w.wait(t, 5*time.Second, "media-error", func(e event) bool { return e.Kind == "media-error" && e.Device == "du" })
	if got := sectors(ev.Ranges); len(got) != 1 || !got[bad] {
		t.Errorf("media-error on enable: ranges %+v, want sector %d alone", ev.Ranges, bad)
	}
	for _, e := range w.all() {
		if e.Device == "du" && e.Seq < ev.Seq && (e.Kind == "media-error" || e.Kind == "cleared") {
			t.Errorf("%s event %+v before enable: a bypassed dust has no bad ranges", e.Kind, e)
		}
	}
	if got := s.run("info", "-c", "--noheadings", "-o", "health,bad_sectors", "du"); got != "bad:1\n" {
		t.Errorf("info -c -o health,bad_sectors du while enabled = %q, want %q", got, "bad:1\n")
	}
	if out, want := s.run("badblocks", "du"), b+" 1\n"; out != want {
		t.Errorf("badblocks du while enabled = %q, want %q", out, want)
	}
	dropCaches(t)
	if _, err := os.ReadFile(vpath); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the file over an enabled bad block: %v, want EIO", err)
	}
	if out, err := exec.Command("dd", "if="+vpath, "of=/dev/null", "bs=4096").CombinedOutput(); err == nil {
		t.Errorf("dd of the file over an enabled bad block succeeded:\n%s", out)
	}
	if err := directRead(vpath, 4096); !errors.Is(err, syscall.EIO) {
		t.Errorf("direct read of the bad 4 KiB: %v, want EIO", err)
	}
	if err := directRead(vpath, 0); err != nil {
		t.Errorf("direct read of the good first 4 KiB: %v", err)
	}

	// A write of the block, in place through the filesystem, clears it.
	src := s.path("block.bin")
	if err := os.WriteFile(src, content[4096:8192], 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "dd", "if="+src, "of="+vpath, "bs=4096", "seek=1", "count=1", "oflag=direct", "conv=notrunc,fsync")
	if s2, _ := firstExtent(t, vpath); s2 != start {
		t.Fatalf("the direct overwrite moved the file's first extent from %d to %d", start, s2)
	}
	for _, tc := range []struct{ msg, want string }{
		{"countbadblocks", "countbadblocks: 0 badblock(s) found\n"},
		{"listbadblocks", "No blocks in badblocklist\n"},
		{"queryblock " + b, "dust_query_block: block " + b + " not found in badblocklist\n"},
	} {
		if got := s.run(append([]string{"message", "du", "0"}, strings.Fields(tc.msg)...)...); got != tc.want {
			t.Errorf("after the clearing write: message du 0 %s = %q, want %q", tc.msg, got, tc.want)
		}
	}
	ev = w.wait(t, 5*time.Second, "cleared", func(e event) bool { return e.Kind == "cleared" && e.Device == "du" })
	if got := sectors(ev.Ranges); len(got) != 1 || !got[bad] {
		t.Errorf("cleared on the clearing write: ranges %+v, want sector %d alone", ev.Ranges, bad)
	}
	if got := s.run("info", "-c", "--noheadings", "-o", "health,bad_sectors", "du"); got != "ok:0\n" {
		t.Errorf("info -c -o health,bad_sectors du after the clearing write = %q, want %q", got, "ok:0\n")
	}
	if out := s.run("badblocks", "du"); out != "" {
		t.Errorf("badblocks du after the clearing write = %q, want none", out)
	}
	dropCaches(t)
	if got, err := os.ReadFile(vpath); err != nil || !bytes.Equal(got, content) {
		t.Errorf("read of the file after the clearing write: %v (%d bytes, contents equal %v)", err, len(got), bytes.Equal(got, content))
	}
	umountFS(t, mnt)
	sh(t, "e2fsck", "-fn", dev)
	s.run("remove", "du")
}
