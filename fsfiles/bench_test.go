package fsfiles

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// populate writes dirs directories of files files of size bytes each,
// with as many goroutines as there are CPUs, then syncs.
func populate(b *testing.B, f *testFS, dirs, files, size int) {
	b.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, dirs)
	sem := make(chan struct{}, 4)
	for d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dir := f.path(fmt.Sprintf("d%03d", d))
			if err := os.Mkdir(dir, 0o755); err != nil {
				errs <- err
				return
			}
			for i := range files {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%05d", i)), data, 0o644); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	f.sync()
}

// BenchmarkLookup100k looks up one bad range (8 sectors under a file's
// block) on a filesystem of 100k files of 1 KiB: through GETFSMAP (XFS
// with rmapbt) and through the FIEMAP walk's index (forced on the same
// XFS, and ext4's only way), warm (the FS prepared: what the daemon pays
// per event) and cold (Open, the index built, the lookup: what the first
// event of a device pays). Baselines, measured right after in the same
// run: warm against one raw GETFSMAP ioctl over the same range; cold
// against filepath.WalkDir of the tree (the least any walk costs).
//
// The whole-device case looks up every sector of the device, capped at
// 1000 entries (the daemon's cap for an event).
//
//	go test ./fsfiles -run '^$' -bench Lookup100k -benchtime 20x
func BenchmarkLookup100k(b *testing.B) {
	for _, kind := range []string{"xfs-rmap", "ext4"} {
		b.Run(kind, func(b *testing.B) {
			f := newTestFS(b, kind, 4096)
			populate(b, f, 100, 1000, 1024)
			var targets []extent.Set
			for d := 0; d < 100; d += 7 {
				pl := f.placement(fmt.Sprintf("d%03d/file-%05d", d, d*13%1000))
				targets = append(targets, sectors(pl[0].Sector, 8))
			}
			methods := []struct {
				name string
				opts Options
			}{{"getfsmap", Options{}}, {"fiemap", Options{ForceWalk: true}}}
			if kind == "ext4" {
				methods = methods[1:]
			}
			whole := []extent.Set{sectors(0, uint64(4096)<<11)}
			for _, m := range methods {
				b.Run(m.name+"/warm", func(b *testing.B) { benchWarm(b, f, m.opts, targets, 1) })
				b.Run(m.name+"/cold", func(b *testing.B) { benchCold(b, f, m.opts, targets) })
				// The whole device lost (a leaf under it gone): every
				// file, capped at 1000 entries as the daemon asks.
				b.Run(m.name+"/whole-device", func(b *testing.B) { benchWarm(b, f, m.opts, whole, 1000) })
			}
		})
	}
}

func benchWarm(b *testing.B, f *testFS, opts Options, targets []extent.Set, wantFiles int) {
	fsys, err := OpenWith(f.major, f.minor, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer fsys.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := fsys.Prepare(context.Background()); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	indexMiB := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	if in := fsys.Info(); in.Inodes < 100000 {
		b.Fatalf("info %+v: fewer than 100k inodes", in)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r, err := fsys.Lookup(context.Background(), targets[i%len(targets)], 1000)
		n := len(r.Files)
		if wantFiles > 1 {
			n += len(r.Metadata) + len(r.Free) // directories count too
		}
		if err != nil || n != wantFiles || (wantFiles > 1) != r.Truncated {
			b.Fatalf("lookup: %v, %d entries, truncated %v", err, n, r.Truncated)
		}
	}
	b.StopTimer()
	root, err := fsys.openRoot()
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(root)
	dev := encodeDev(f.major, f.minor)
	raw := testenv.Paired(b, func(i int) {
		t := targets[i%len(targets)].Bounds()
		_ = getfsmap(root, dev, t.Start*512, t.End()*512-1, func(fsmapRecord) bool { return true })
	})
	b.ReportMetric(indexMiB, "index-MiB")
	b.ReportMetric(raw, "getfsmap-ns/op")
	b.ReportMetric(testenv.NsPerOp(b)/raw, "x-getfsmap")
}

func benchCold(b *testing.B, f *testFS, opts Options, targets []extent.Set) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		fsys, err := OpenWith(f.major, f.minor, opts)
		if err != nil {
			b.Fatal(err)
		}
		r, err := fsys.Lookup(context.Background(), targets[i%len(targets)], 1000)
		if err != nil || len(r.Files) != 1 {
			b.Fatalf("lookup: %v, %+v", err, r)
		}
		fsys.Close()
	}
	b.StopTimer()
	walk := testenv.Paired(b, func(int) {
		n := 0
		_ = filepath.WalkDir(f.mnt, func(string, fs.DirEntry, error) error { n++; return nil })
	})
	b.ReportMetric(walk/1e6, "walkdir-ms")
	b.ReportMetric(testenv.NsPerOp(b)/walk, "x-walkdir")
}
