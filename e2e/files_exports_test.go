package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/fsfiles/fstest"
)

// TestFilesOnExportedStripe: a filesystem on /dev/daxstack/top, top
// linear over a stripe of two file leaves (chunks of 8 sectors), for ext4
// and XFS with and without rmapbt. Poison injected on a leaf sector under
// one block of a file (the file's placement on top from filefrag or
// xfs_bmap, the leaf sector from the stripe's arithmetic): `files top`
// names exactly that file, under both its names, and that byte range; a
// range of free space names no file; top's holder (`hold --exec`) gets the
// follow-up event of kind files with the same rows.
//
// It needs the daemon's exports (`serve --links`); before they exist it
// skips, saying so.
func TestFilesOnExportedStripe(t *testing.T) {
	requireRoot(t)
	probe := newQuickSandbox(t)
	if help := probe.run("serve", "--help"); !strings.Contains(help, "--links") {
		t.Skip("daxstack serve exports no block devices yet (no --links): this test needs the exports")
	}
	for _, kind := range fstest.Kinds {
		t.Run(kind, func(t *testing.T) {
			s := newQuickSandbox(t)
			s.env = append(s.env, "DAXSTACK_NO_EXPORTS=0")
			const leafSectors = 327680 // 160 MiB each: XFS wants 300 MiB
			a, b := s.file("a.img", leafSectors*512), s.file("b.img", leafSectors*512)
			s.startDaemon("--no-uevents", "--rescan", "1h", "--mount", s.path("dev"), "--links", s.path("links"),
				"--mapper-links", "off", "--nbd-socket", s.path("nbd.sock"))
			s.run("create", "s0", "--table", fmt.Sprintf("0 %d striped 2 8 %s 0 %s 0", 2*leafSectors, a, b))
			s.run("create", "top", "--table", fmt.Sprintf("0 %d linear s0 0", 2*leafSectors))
			dev := s.path("links/top")
			args := map[string][]string{"ext4": {"-q", "-F", "-b", "4096"}, "xfs": {"-q", "-f", "-m", "rmapbt=0"}, "xfs-rmap": {"-q", "-f", "-m", "rmapbt=1"}}[kind]
			mkfs := map[bool]string{true: "mkfs.ext4", false: "mkfs.xfs"}[kind == "ext4"]
			fstest.Run(t, mkfs, append(args, dev)...)
			fs := &fstest.FS{T: t, Kind: kind, Dev: dev, Mnt: s.path("mnt")}
			if err := os.Mkdir(fs.Mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			fstest.Run(t, "mount", dev, fs.Mnt)
			t.Cleanup(fs.Umount)
			fs.Write("d/victim", 64<<10)
			fs.Write("d/other", 64<<10)
			if err := os.Link(fs.Path("d/victim"), fs.Path("victim-link")); err != nil {
				t.Fatal(err)
			}
			fs.Sync()

			events := s.path("events.jsonl")
			s.startBg("hold", "top", "--exec", "cat >> "+events)
			waitHeld(t, s, "top")

			// Bytes 8192+4096 of the victim: 8 sectors of top, one chunk
			// of the stripe, on leaf a or b.
			const off, n = 8192, 4096
			sec := sectorAt(t, fs.Placement("d/victim"), off, n)
			if sec%8 != 0 {
				t.Fatalf("the victim's block at top sector %d is not on a chunk", sec)
			}
			chunk := sec / 8
			leaf := []string{a, b}[chunk%2]
			s.run("inject", leaf, "--sector", fmt.Sprint(chunk/2*8), "--count", "8")

			want := []string{fs.Path("d/victim"), fs.Path("victim-link")}
			check := func(what string, rows []fileRow) {
				t.Helper()
				var names []string
				for _, r := range rows {
					if r.Inode != fs.Ino("d/victim") || r.Offset != off || r.Length != n {
						t.Errorf("%s: row %+v, want inode %d bytes %d+%d", what, r, fs.Ino("d/victim"), off, n)
					}
					names = append(names, r.Path)
				}
				if !slices.Equal(names, want) {
					t.Errorf("%s: files %v, want %v", what, names, want)
				}
			}
			r := s.files("top").Report[0]
			if r.Filesystem[0].Mount != fs.Mnt {
				t.Errorf("files top: mount %q, want %q", r.Filesystem[0].Mount, fs.Mnt)
			}
			var rows []fileRow
			for _, f := range r.Files {
				rows = append(rows, fileRow{f.Path, f.Inode, f.Offset, f.Length})
			}
			check("files top", rows)

			// The holder's follow-up carries the same rows.
			var follow *filesEvent
			deadline := time.Now().Add(30 * time.Second)
			for follow == nil && time.Now().Before(deadline) {
				follow = findFilesEvent(t, events, "top")
				time.Sleep(50 * time.Millisecond)
			}
			if follow == nil {
				t.Fatalf("no files event for top in %s", events)
			}
			check("the files event of top", follow.Files)

			// Free space names no file.
			free := s.files("top", "--sector", fmt.Sprint(2*leafSectors-64), "--count", "8").Report[0]
			if len(free.Files) != 0 || len(free.Free) != 1 {
				t.Errorf("the end of top: %+v, want free space", free)
			}
		})
	}
}

type fileRow struct {
	Path   string `json:"path"`
	Inode  uint64 `json:"inode"`
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
}

type filesEvent struct {
	Seq    uint64    `json:"seq"`
	Kind   string    `json:"kind"`
	Device string    `json:"device"`
	Files  []fileRow `json:"files"`
}

// findFilesEvent returns the first event of kind files of device in a
// file of event lines, or nil.
func findFilesEvent(t *testing.T, path, device string) *filesEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		var ev filesEvent
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Kind == "files" && ev.Device == device {
			return &ev
		}
	}
	return nil
}

// waitHeld waits until dev has a holder.
func waitHeld(t *testing.T, s *sandbox, dev string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.holderOf(dev) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("%s never held", dev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
