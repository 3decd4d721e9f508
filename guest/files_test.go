//go:build guest

package guest

// A filesystem mounted -o dax on a pmem leaf, and `daxstack files`
// (issue #13): from a bad range on the leaf to the file whose data lies
// there. Where the file lies is found without daxstack (FIEMAP), and the
// kernel is shown to fail exactly that file's block before daxstack is
// asked.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func TestFilesOnDaxFS(t *testing.T) {
	ns := createNamespace(t, region2, "fsdax", "128M")
	mnt := daxFS(t, ns)
	victim, other := filepath.Join(mnt, "victim"), filepath.Join(mnt, "other")
	writeFile(t, other, bytes.Repeat([]byte("o"), 64<<10))
	writeFile(t, victim, bytes.Repeat([]byte("v"), 64<<10))
	if !isDAX(t, victim) {
		t.Fatalf("%s is not DAX", victim)
	}
	exts := fiemap(t, victim)
	if len(exts) == 0 || exts[0].Length < 3*4096 || exts[0].Logical != 0 {
		t.Fatalf("victim's extents %+v: want one from byte 0 of at least 3 blocks", exts)
	}
	// Poison the victim's third block: 8 sectors of the device.
	const off = 2 * 4096
	sector := (exts[0].Physical + off) / 512
	ns.injectBadblocks(t, sector, 8)

	// The kernel fails a read of that block of the file and no other.
	f, err := os.Open(victim)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, off); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the poisoned block of %s: %v, want EIO", victim, err)
	}
	if _, err := f.ReadAt(buf, off+4096); err != nil {
		t.Fatalf("read of the next block of %s: %v", victim, err)
	}

	s := newSandbox(t)
	rows := s.anyReport("files", ns.node())
	var hit map[string]any
	for _, r := range rows {
		if r["path"] == victim {
			hit = r
		}
		if r["path"] == other {
			t.Errorf("files names %s, which lies elsewhere: %v", other, r)
		}
	}
	if hit == nil {
		t.Fatalf("files %s does not name %s (sector %d): %v", ns.node(), victim, sector, rows)
	}
	if o, l := num(hit["offset"]), num(hit["length"]); o != off || l != 4096 {
		t.Errorf("files: %s bytes %d+%d, want %d+4096", victim, o, l, off)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(victim, &st); err != nil {
		t.Fatal(err)
	}
	if ino := num(hit["inode"]); ino != st.Ino {
		t.Errorf("files: inode %d, want %d", ino, st.Ino)
	}
	if text := s.run(nil, "files", ns.node()); !bytes.Contains([]byte(text), []byte(victim)) || !bytes.Contains([]byte(text), []byte(strconv.Itoa(off))) {
		t.Errorf("files %s (text) does not say %s at %d:\n%s", ns.node(), victim, off, text)
	}
}

// num is a JSON number as an unsigned integer (-1 when it is not one).
func num(v any) uint64 {
	f, ok := v.(float64)
	if !ok {
		return ^uint64(0)
	}
	return uint64(f)
}
