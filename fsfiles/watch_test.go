package fsfiles

import (
	"testing"
)

// TestLookupNoWatch: without the watch every lookup walks again, and
// still finds what changed.
func TestLookupNoWatch(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := OpenWith(f.major, f.minor, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	doLookup(t, fs, sectors(sectorOf(t, f.placement("a"), 0), 1), 0)
	f.write("b", 8192)
	r := doLookup(t, fs, sectors(sectorOf(t, f.placement("b"), 4096), 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("b"), Paths: []string{f.path("b")}, Offset: 4096, Length: 512})
	if fs.watch != nil {
		t.Errorf("a watch was started")
	}
}
