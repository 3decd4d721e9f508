package fsfiles

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"golang.org/x/sys/unix"
)

// The kinds of filesystem every real test runs on. XFS needs 300 MB at
// least; the backing files are sparse.
var kinds = []string{"ext4", "xfs", "xfs-rmap"}

func sectors(start, n uint64) extent.Set { return extent.Of(extent.Extent{Start: start, Len: n}) }

func doLookup(t *testing.T, fs *FS, s extent.Set, limit int) Result {
	t.Helper()
	r, err := fs.Lookup(context.Background(), s, limit)
	if err != nil {
		t.Fatalf("Lookup %v: %v", s, err)
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Logf("Lookup %v (%s):\n%s", s, r.Method, b.String())
	return r
}

// wantOnlyFile checks that r holds exactly one file range and nothing else.
func wantOnlyFile(t *testing.T, r Result, want FileRange) {
	t.Helper()
	if len(r.Metadata) != 0 || len(r.Free) != 0 || r.Truncated {
		t.Errorf("want only a file; got metadata %v free %v truncated %v", r.Metadata, r.Free, r.Truncated)
	}
	if len(r.Files) != 1 {
		t.Fatalf("want 1 file range, got %+v", r.Files)
	}
	got := r.Files[0]
	if want.Count == 0 {
		want.Count = 1
	}
	if got.Inode != want.Inode || !slices.Equal(got.Paths, want.Paths) || got.Offset != want.Offset ||
		got.Length != want.Length || got.Count != want.Count || got.Deleted != want.Deleted {
		t.Errorf("file range\n got %+v\nwant %+v", got, want)
	}
}

// sectorOf returns the device sector holding byte off of a file whose
// placement the oracle gave.
func sectorOf(t *testing.T, pl []oracleExtent, off uint64) uint64 {
	t.Helper()
	for _, e := range pl {
		if off >= e.Logical && off < e.Logical+e.Length {
			return e.Sector + (off-e.Logical)/512
		}
	}
	t.Fatalf("byte %d is in no extent of %+v", off, pl)
	return 0
}

func TestLookupRealFS(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { testLookupRealFS(t, kind) })
	}
}

func testLookupRealFS(t *testing.T, kind string) {
	f := newTestFS(t, kind, 400)
	f.write("data", 64<<10)
	f.write("d/a", 8192)
	if err := os.Link(f.path("d/a"), f.path("d/a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.path("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(f.path("d/a"), f.path("other/second name")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.path("many"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if err := os.WriteFile(f.path(fmt.Sprintf("many/entry-with-a-rather-long-name-%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.sync()
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	wantMethod := map[string]string{"ext4": "fiemap", "xfs": "fiemap", "xfs-rmap": "getfsmap"}[kind]

	t.Run("file block", func(t *testing.T) {
		pl := f.placement("data")
		s := sectorOf(t, pl, 4096+3*512)
		r := doLookup(t, fs, sectors(s, 3), 0)
		if r.Method != wantMethod {
			t.Errorf("method %q, want %q", r.Method, wantMethod)
		}
		wantOnlyFile(t, r, FileRange{Inode: f.ino("data"), Paths: []string{f.path("data")}, Offset: 4096 + 3*512, Length: 3 * 512})
	})
	t.Run("clipped to the file", func(t *testing.T) {
		// Two sectors before the file's first and two of it: only the
		// file's two are the file's.
		pl := f.placement("data")
		r := doLookup(t, fs, sectors(pl[0].Sector-2, 4), 0)
		var got []FileRange
		for _, fr := range r.Files {
			if fr.Inode == f.ino("data") {
				got = append(got, fr)
			}
		}
		if len(got) != 1 || got[0].Offset != pl[0].Logical || got[0].Length != 2*512 {
			t.Errorf("data ranges %+v, want offset %d length 1024", got, pl[0].Logical)
		}
	})
	t.Run("hard links", func(t *testing.T) {
		pl := f.placement("d/a")
		r := doLookup(t, fs, sectors(sectorOf(t, pl, 4096), 1), 0)
		wantOnlyFile(t, r, FileRange{Inode: f.ino("d/a"), Paths: []string{f.path("d/a"), f.path("d/a-link"), f.path("other/second name")},
			Offset: 4096, Length: 512})
		rows, _ := r.FileRows(0)
		if len(rows) != 3 {
			t.Errorf("rows %+v, want one per name", rows)
		}
	})
	t.Run("directory", func(t *testing.T) {
		pl := f.placement("many")
		r := doLookup(t, fs, sectors(pl[0].Sector, 1), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 1 {
			t.Fatalf("want one metadata range, got %+v", r)
		}
		if m := r.Metadata[0]; m.Kind != KindDirectory || m.Path != f.path("many") || m.Inode != f.ino("many") {
			t.Errorf("metadata %+v, want the directory %s", m, f.path("many"))
		}
	})
	t.Run("journal", func(t *testing.T) {
		r := doLookup(t, fs, sectors(f.journalSector(), 2), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != KindJournal {
			t.Fatalf("want the journal, got %+v", r)
		}
	})
	t.Run("inodes", func(t *testing.T) {
		r := doLookup(t, fs, sectors(f.inodeSector("data"), 1), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != KindInodes {
			t.Fatalf("want the inodes, got %+v", r)
		}
	})
	t.Run("free", func(t *testing.T) {
		s := f.freeSector()
		r := doLookup(t, fs, sectors(s, 1), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 0 || len(r.Free) != 1 || r.Free[0] != extent.ExtentRun(extent.Extent{Start: s, Len: 1}) {
			t.Fatalf("want sector %d free, got %+v", s, r)
		}
	})
	t.Run("unlinked but open", func(t *testing.T) {
		f.write("ghost", 16<<10)
		pl := f.placement("ghost")
		ino := f.ino("ghost")
		fh, err := os.Open(f.path("ghost"))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f.path("ghost")); err != nil {
			t.Fatal(err)
		}
		r := doLookup(t, fs, sectors(sectorOf(t, pl, 8192), 2), 0)
		if len(r.Files) != 1 {
			t.Fatalf("want the unlinked file, got %+v", r)
		}
		g := r.Files[0]
		if g.Inode != ino || !g.Deleted || !slices.Contains(g.OpenBy, os.Getpid()) || g.Offset != 8192 || g.Length != 1024 ||
			!slices.Equal(g.Paths, []string{f.path("ghost")}) {
			t.Errorf("got %+v, want inode %d deleted, open by %d, bytes 8192+1024", g, ino, os.Getpid())
		}
		var b strings.Builder
		r.WriteText(&b)
		if !strings.Contains(b.String(), fmt.Sprintf("(deleted, open by pid %d)", os.Getpid())) {
			t.Errorf("text does not say it: %q", b.String())
		}
	})
	t.Run("written after the index", func(t *testing.T) {
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		built := fs.Info().Built
		f.write("late/file", 12<<10)
		pl := f.placement("late/file")
		r := doLookup(t, fs, sectors(sectorOf(t, pl, 4096), 1), 0)
		wantOnlyFile(t, r, FileRange{Inode: f.ino("late/file"), Paths: []string{f.path("late/file")}, Offset: 4096, Length: 512})
		if !fs.Info().Built.Equal(built) {
			t.Errorf("found by walking again, not through the watch")
		}
	})
	t.Run("renamed after the index", func(t *testing.T) {
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		built := fs.Info().Built
		if err := os.Rename(f.path("late"), f.path("later")); err != nil {
			t.Fatal(err)
		}
		pl := f.placement("later/file")
		r := doLookup(t, fs, sectors(sectorOf(t, pl, 0), 1), 0)
		wantOnlyFile(t, r, FileRange{Inode: f.ino("later/file"), Paths: []string{f.path("later/file")}, Offset: 0, Length: 512})
		if !fs.Info().Built.Equal(built) {
			t.Errorf("found by walking again, not through the watch")
		}
	})
	t.Run("freed and reused", func(t *testing.T) {
		f.write("old", 32<<10)
		pl := f.placement("old")
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f.path("old")); err != nil {
			t.Fatal(err)
		}
		f.sync()
		s := sectorOf(t, pl, 0)
		r := doLookup(t, fs, sectors(s, 1), 0)
		// The block is free, or (XFS frees an unlinked inode's blocks in
		// the background) still the removed file's, which is said so.
		for _, fr := range r.Files {
			if !fr.Deleted || len(fr.OpenBy) != 0 || !slices.Equal(fr.Paths, []string{f.path("old")}) {
				t.Errorf("a removed file's block names %+v", fr)
			}
		}
	})
	t.Run("written through a shared mapping", func(t *testing.T) {
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Create(f.path("mapped"))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if err := fh.Truncate(1 << 20); err != nil {
			t.Fatal(err)
		}
		// The truncate's event is applied now, while the file has no block.
		if err := fs.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(fh.Fd()), 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		for i := 256 << 10; i < 264<<10; i++ {
			m[i] = 0x5a
		}
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			t.Fatal(err)
		}
		pl := f.placement("mapped")
		r := doLookup(t, fs, sectors(sectorOf(t, pl, 256<<10), 1), 0)
		wantOnlyFile(t, r, FileRange{Inode: f.ino("mapped"), Paths: []string{f.path("mapped")}, Offset: 256 << 10, Length: 512})
	})
	t.Run("whole device", func(t *testing.T) {
		all := sectors(0, fs.sectors)
		r := doLookup(t, fs, all, 0)
		if r.Truncated {
			t.Errorf("truncated without a limit")
		}
		covered := checkFilesExact(t, f, r, all, "data", "d/a", "many")
		if covered["data"] != 64<<10 || covered["d/a"] != 8192 {
			t.Errorf("whole device covers %v of data and d/a, want all of both", covered)
		}
		r = doLookup(t, fs, all, 5)
		if !r.Truncated || len(r.Files)+len(r.Metadata)+len(r.Free) != 5 {
			t.Errorf("limit 5: %d entries, truncated %v", len(r.Files)+len(r.Metadata)+len(r.Free), r.Truncated)
		}
	})
	t.Run("strided lost leaf", func(t *testing.T) {
		// A leaf lost under a 4-way stripe of 8-sector chunks: one chunk
		// in four of the device, as one strided run.
		lost := extent.FromRuns(extent.Run{Start: 8, Len: 8, Stride: 32, Count: fs.sectors / 32})
		r := doLookup(t, fs, lost, 0)
		covered := checkFilesExact(t, f, r, lost, "data", "d/a")
		if covered["data"] != 16<<10 {
			t.Errorf("a quarter of data (16 KiB) should be lost, got %d", covered["data"])
		}
		strided := false
		for _, fr := range r.Files {
			strided = strided || fr.Count > 1
		}
		if !strided {
			t.Errorf("no strided file range: %+v", r.Files)
		}
	})
}

// checkFilesExact checks the file ranges of r for the named files against
// the oracle's placement: every byte listed lies on a sector of bad, and
// every byte of the file on a sector of bad is listed. It returns how many
// bytes of each file r lists.
func checkFilesExact(t *testing.T, f *testFS, r Result, bad extent.Set, files ...string) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	for _, name := range files {
		ino := f.ino(name)
		pl := f.placement(name)
		var want, have []extent.Run // file space, 512-byte units
		for _, e := range pl {
			for i := uint64(0); i < e.Length/512; i++ {
				if bad.Contains(e.Sector + i) {
					want = append(want, extent.ExtentRun(extent.Extent{Start: e.Logical/512 + i, Len: 1}))
				}
			}
		}
		var fromMeta bool
		for _, fr := range r.Files {
			if fr.Inode != ino {
				continue
			}
			have = append(have, extent.Run{Start: fr.Offset / 512, Len: fr.Length / 512, Stride: fr.Stride / 512, Count: fr.Count})
			got[name] += fr.Length * fr.Count
		}
		for _, m := range r.Metadata {
			fromMeta = fromMeta || m.Inode == ino
		}
		if fi, _ := os.Stat(f.path(name)); fi != nil && fi.IsDir() {
			if len(want) > 0 && !fromMeta {
				t.Errorf("%s: directory blocks on bad sectors but no metadata range names it", name)
			}
			continue
		}
		w, h := extent.FromRuns(want...), extent.FromRuns(have...)
		if !w.Equal(h) {
			t.Errorf("%s: ranges listed %v, bytes on bad sectors %v (512-byte units)", name, h, w)
		}
	}
	return got
}
