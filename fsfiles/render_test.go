package fsfiles

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/daxstack/daxstack/extent"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// sampleResult gathers pieces the way a lookup does: a file hit in two
// places that touch (one range), a file with two names, a strided hit, a
// deleted file open by two processes, one being freed, a directory, the
// journal, free space.
func sampleResult(limit int) Result {
	c := newCollector(1<<20, 0)
	ext := func(s, n uint64) []extent.Run { return []extent.Run{extent.ExtentRun(extent.Extent{Start: s, Len: n})} }
	// inode 131 at sectors 1000.. holds bytes 0..; two pieces touching in
	// file space come from two device extents.
	c.file(fileKey{ino: 131}, 1000, 0, ext(1008, 8))
	c.file(fileKey{ino: 131}, 5000, 8192, ext(5000, 8))
	c.file(fileKey{ino: 132}, 2000, 0, ext(2001, 1))
	c.file(fileKey{ino: 133}, 3000, 1<<20, []extent.Run{{Start: 3008, Len: 8, Stride: 32, Count: 100}})
	c.file(fileKey{ino: 134, unwritten: true}, 4000, 0, ext(4000, 2))
	c.file(fileKey{ino: 135}, 6000, 0, ext(6000, 1))
	c.file(fileKey{ino: 136}, 7000, 4096, ext(7000, 1))
	c.metadata(metaKey{kind: KindDirectory, ino: 140}, ext(120, 8))
	c.metadata(metaKey{kind: KindJournal, detail: "internal log"}, ext(409656, 8))
	c.metadata(metaKey{kind: KindStatic}, []extent.Run{{Start: 0, Len: 8, Stride: 204800, Count: 4}})
	c.freeSpace(ext(9000, 16))
	c.freeSpace(ext(9016, 16))
	paths := map[uint64][]string{131: {"/mnt/data"}, 132: {"/mnt/d/a", "/mnt/d/a-link"}, 133: {"/mnt/big"}, 134: {"/mnt/prealloc"}, 140: {"/mnt/dir\nfile\t1"}}
	open := func(ino uint64) ([]int, string, bool) {
		switch ino {
		case 135:
			return []int{812, 900}, "/mnt/ghost", true
		case 136:
			return nil, "/mnt/old", true
		}
		return nil, "", false
	}
	r := c.result(limit, func(ino uint64) []string { return paths[ino] }, open)
	r.Mount, r.FSType, r.Method = "/mnt", "xfs", "getfsmap"
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRender(t *testing.T) {
	r := sampleResult(0)
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "result.txt", text.Bytes())
	js, err := json.MarshalIndent(r.Report(0), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "result.json", append(js, '\n'))

	// Coalescing: the two pieces of inode 131 are one range; the free
	// pieces one run.
	if len(r.Files) != 6 {
		t.Fatalf("files %+v, want 6 ranges", r.Files)
	}
	for _, f := range r.Files {
		if f.Inode == 131 && (f.Offset != 4096 || f.Length != 8192) {
			t.Errorf("inode 131: %+v, want bytes 4096+8192", f)
		}
	}
	if len(r.Free) != 1 || r.Free[0] != extent.ExtentRun(extent.Extent{Start: 9000, Len: 32}) {
		t.Errorf("free %v", r.Free)
	}
	// The event shape: one row per name, at most max rows, and truncated.
	rows, trunc := r.FileRows(3)
	if len(rows) != 3 || !trunc {
		t.Errorf("FileRows(3): %d rows, truncated %v", len(rows), trunc)
	}
	rows, trunc = r.FileRows(0)
	if len(rows) != 7 || trunc {
		t.Errorf("FileRows(0): %d rows, truncated %v", len(rows), trunc)
	}
}

func TestResultLimit(t *testing.T) {
	r := sampleResult(4)
	if !r.Truncated || len(r.Files) != 4 || len(r.Metadata) != 0 || len(r.Free) != 0 {
		t.Errorf("limit 4: %d files %d metadata %d free, truncated %v", len(r.Files), len(r.Metadata), len(r.Free), r.Truncated)
	}
	r = sampleResult(9)
	if !r.Truncated || len(r.Files) != 6 || len(r.Metadata) != 3 || len(r.Free) != 0 {
		t.Errorf("limit 9: %d files %d metadata, truncated %v", len(r.Files), len(r.Metadata), r.Truncated)
	}
	r = sampleResult(10)
	if r.Truncated || len(r.Free) != 1 {
		t.Errorf("limit 10 (all): truncated")
	}
	// The work bound: pieces past MaxPieces are not gathered, and it says so.
	c := newCollector(2, 0)
	for i := range uint64(5) {
		c.freeSpace([]extent.Run{extent.ExtentRun(extent.Extent{Start: i * 10, Len: 1})})
	}
	none := func(uint64) ([]int, string, bool) { return nil, "", false }
	if res := c.result(0, func(uint64) []string { return nil }, none); !res.Truncated || len(res.Free) != 2 {
		t.Errorf("work bound: %+v", res)
	}
	// The entry bound keeps the first entries met, and all of their pieces.
	c = newCollector(100, 2)
	one := func(s uint64) []extent.Run { return []extent.Run{extent.ExtentRun(extent.Extent{Start: s, Len: 1})} }
	c.file(fileKey{ino: 9}, 100, 0, one(100))
	c.file(fileKey{ino: 5}, 200, 0, one(200))
	c.file(fileKey{ino: 7}, 300, 0, one(300)) // a third file: left out
	c.file(fileKey{ino: 9}, 400, 4096, one(400))
	res := c.result(0, func(ino uint64) []string { return []string{fmt.Sprint("/f", ino)} }, none)
	if !res.Truncated || len(res.Files) != 3 || res.Files[0].Inode != 5 || res.Files[1].Inode != 9 || res.Files[2].Offset != 4096 {
		t.Errorf("entry bound: %+v", res)
	}
}
