package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/fsfiles/fstest"
)

// filesReport is the JSON of `daxstack files`.
type filesReport struct {
	Report []struct {
		Filesystem []struct {
			Device         string `json:"device"`
			BlockDevice    string `json:"block_device"`
			Mount          string `json:"mount"`
			FSType         string `json:"fstype"`
			Method         string `json:"method"`
			FilesTruncated bool   `json:"files_truncated"`
		} `json:"filesystem"`
		Files []struct {
			Path   string `json:"path"`
			Inode  uint64 `json:"inode"`
			Offset uint64 `json:"offset"`
			Length uint64 `json:"length"`
		} `json:"files"`
		Metadata []struct {
			Kind   string `json:"kind"`
			Path   string `json:"path"`
			Offset uint64 `json:"offset"`
			Length uint64 `json:"length"`
		} `json:"metadata"`
		Free []struct {
			Offset uint64 `json:"offset"`
			Length uint64 `json:"length"`
		} `json:"free"`
	} `json:"report"`
}

// files runs `daxstack files ARGS --reportformat json` and decodes it.
func (s *sandbox) files(args ...string) filesReport {
	s.t.Helper()
	out := s.run(append(append([]string{"files"}, args...), "--reportformat", "json")...)
	var r filesReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Report) != 1 || len(r.Report[0].Filesystem) != 1 {
		s.t.Fatalf("files %v: %v\n%s", args, err, out)
	}
	return r
}

// sectorAt returns the device sector of byte off of a file, from the
// file's extents as filefrag or xfs_bmap gave them; the extent must hold
// n bytes from off.
func sectorAt(t *testing.T, exts []fstest.Extent, off, n uint64) uint64 {
	t.Helper()
	for _, e := range exts {
		if off >= e.Logical && off+n <= e.Logical+e.Length {
			return e.Sector + (off-e.Logical)/512
		}
	}
	t.Fatalf("no extent holds bytes %d+%d: %+v", off, n, exts)
	return 0
}

// TestFilesOnBlockDevice runs `daxstack files` on a loop device in no
// table, for ext4 and XFS with and without reverse mapping: a range under
// one block of a file names exactly that file (under both of its hard
// links) and byte range, found independently with filefrag -v or
// xfs_bmap -v; a directory block and the journal are metadata of their
// kind; free space names no file; the text says the same for people.
func TestFilesOnBlockDevice(t *testing.T) {
	requireRoot(t)
	for _, kind := range fstest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := newQuickSandbox(t)
			size := 400 // XFS wants 300 MiB at least
			if kind == "ext4" {
				size = 64 // 1 KiB blocks
			}
			fs := fstest.New(t, kind, size)
			fs.Write("d/victim", 64<<10)
			fs.Write("d/other", 64<<10)
			for i := range 200 { // a directory with blocks of its own (not inline in its inode)
				fs.Write(fmt.Sprintf("big/entry-with-a-long-name-%04d", i), 0)
			}
			if err := os.MkdirAll(fs.Path("e"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(fs.Path("d/victim"), fs.Path("e/victim-link")); err != nil {
				t.Fatal(err)
			}
			fs.Sync()
			victim := fs.Placement("d/victim")
			const off, n = 8192, 4096
			sector := sectorAt(t, victim, off, n)

			r := s.files(fs.Dev, "--sector", fmt.Sprint(sector), "--count", fmt.Sprint(n/512)).Report[0]
			if f := r.Filesystem[0]; f.Mount != fs.Mnt || f.BlockDevice != fmt.Sprintf("%d:%d", fs.Major, fs.Minor) || f.Device != fs.Dev || f.FilesTruncated {
				t.Errorf("filesystem %+v, want %s on %s (%d:%d)", f, fs.Mnt, fs.Dev, fs.Major, fs.Minor)
			}
			if want := map[bool]string{true: "getfsmap", false: "fiemap"}[kind == "xfs-rmap"]; r.Filesystem[0].Method != want {
				t.Errorf("method %q, want %q", r.Filesystem[0].Method, want)
			}
			var names []string
			for _, f := range r.Files {
				if f.Inode != fs.Ino("d/victim") || f.Offset != off || f.Length != n {
					t.Errorf("file row %+v, want inode %d bytes %d+%d", f, fs.Ino("d/victim"), off, n)
				}
				names = append(names, f.Path)
			}
			if want := []string{fs.Path("d/victim"), fs.Path("e/victim-link")}; !slices.Equal(names, want) {
				t.Errorf("files %v, want %v (both hard links)", names, want)
			}
			if len(r.Metadata) != 0 || len(r.Free) != 0 {
				t.Errorf("metadata %+v free %+v under a file's block", r.Metadata, r.Free)
			}
			text := s.run("files", fs.Dev, "--sector", fmt.Sprint(sector), "--count", fmt.Sprint(n/512))
			wantLine := fmt.Sprintf("file\t%s\tinode %d\tbytes %d+%d\n", fs.Path("d/victim"), fs.Ino("d/victim"), off, n)
			if !strings.Contains(text, wantLine) || strings.Contains(text, fs.Path("d/other")) {
				t.Errorf("text:\n%s\nwant the line %q and no other file", text, wantLine)
			}

			// A directory's block is metadata of that directory.
			dir := fs.Placement("big")
			r = s.files(fs.Dev, "--sector", fmt.Sprint(dir[0].Sector), "--count", "1").Report[0]
			if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != "directory" || r.Metadata[0].Path != fs.Path("big") || r.Metadata[0].Offset != dir[0].Sector {
				t.Errorf("directory block %d: %+v, want the directory %s", dir[0].Sector, r, fs.Path("big"))
			}

			// The journal (ext4) or the log (XFS).
			j := fs.JournalSector()
			r = s.files(fs.Dev, "--sector", fmt.Sprint(j), "--count", "1").Report[0]
			if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != "journal" {
				t.Errorf("journal sector %d: %+v, want the journal", j, r)
			}

			// Free space.
			free := fs.FreeSector()
			r = s.files(fs.Dev, "--sector", fmt.Sprint(free), "--count", "8").Report[0]
			if len(r.Files) != 0 || len(r.Metadata) != 0 || len(r.Free) != 1 || r.Free[0].Offset != free || r.Free[0].Length != 8 {
				t.Errorf("free sectors %d+8: %+v, want free space only", free, r)
			}

			// A loop device has no badblocks: without a range there is
			// nothing to look up, and it says so.
			if e := s.runFail("files", fs.Dev); !strings.Contains(e, "give --sector and --count") {
				t.Errorf("files %s without a range: %q", fs.Dev, e)
			}
		})
	}
}

// TestFilesNotMounted: a block device without a filesystem, a mapped
// device in embedded mode (nothing is exported) and a name that is
// neither are each told plainly.
func TestFilesNotMounted(t *testing.T) {
	requireRoot(t)
	s := newQuickSandbox(t)
	leaf := s.file("leaf.img", 8<<20)
	s.run("create", "top", "--table", "0 16384 linear "+leaf+" 0")
	s.run("inject", "top", "--sector", "100", "--count", "8")
	if e := s.runFail("files", "top"); !strings.Contains(e, "no filesystem is mounted on top") || !strings.Contains(e, "not exported") {
		t.Errorf("files top in embedded mode: %q", e)
	}
	if e := s.runFail("files", s.path("nothing")); !strings.Contains(e, "neither a device daxstack knows nor a block device") {
		t.Errorf("files of a missing path: %q", e)
	}
	if e := s.runFail("files", "top", "--sector", "16380", "--count", "8"); !strings.Contains(e, "outside") {
		t.Errorf("files of a range past the end: %q", e)
	}
	if e := s.runFail("files", "top", "--sector", "1"); !strings.Contains(e, "--sector and --count go together") {
		t.Errorf("files with --sector only: %q", e)
	}
}
