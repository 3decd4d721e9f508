package service_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/service"
)

// BenchmarkFilesFollowUp measures what the files of an event cost its
// holder: one bad sector injected per iteration on the leaf under a file's
// block of a filesystem of 200 files on top (through the seam to the loop
// device it is mounted from), from the inject call to the arrival at top's
// holder of the sector event and of its follow-up of kind files, one
// injection at a time. The sector event is the baseline, in the same run:
// the follow-up must not delay it, and comes a lookup later.
//
//	go test ./service -run '^$' -bench FilesFollowUp -benchtime 1000x
func BenchmarkFilesFollowUp(b *testing.B) {
	for _, kind := range []string{"ext4", "xfs-rmap"} {
		b.Run(kind, func(b *testing.B) {
			size := 400
			if kind == "ext4" {
				size = 64
			}
			s := newFilesStack(b, kind, size)
			const files = 200
			for i := range files {
				s.fs.Write(fmt.Sprintf("d/f%03d", i), 64<<10)
			}
			s.fs.Sync()
			first := make([]uint64, files)
			for i := range files {
				e := s.fs.Placement(fmt.Sprintf("d/f%03d", i))[0]
				if e.Length < 64<<10 {
					b.Fatalf("f%03d: first extent %+v, want 64 KiB", i, e)
				}
				first[i] = e.Sector
			}
			hold, err := service.Hold(s.d.sock, lastSeq(b, s.cl), []string{"top"}, "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer hold.Close()
			sectorLat := make([]time.Duration, 0, b.N)
			filesLat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				// Each sector once: 4 sectors apart within the files' first 64 KiB.
				sec := first[i%files] + uint64(i/files)*4%128
				start := time.Now()
				call(b, s.cl, "inject", control.RangeReq{Name: s.img, Sector: sec, Count: 1}, nil)
				var gotSector, gotFiles bool
				for !gotSector || !gotFiles {
					select {
					case ev, ok := <-hold.Events():
						if !ok {
							b.Fatalf("stream ended: %v", hold.Err())
						}
						if !ev.Ranges.Contains(sec) {
							continue
						}
						switch {
						case ev.Kind == service.KindFiles && !gotFiles:
							gotFiles = true
							filesLat = append(filesLat, time.Since(start))
						case ev.Kind != service.KindFiles && !gotSector:
							gotSector = true
							sectorLat = append(sectorLat, time.Since(start))
						}
						hold.Ack(ev.Seq)
					case <-time.After(30 * time.Second):
						b.Fatalf("injection %d at %d: sector event %v, files event %v", i, sec, gotSector, gotFiles)
					}
				}
			}
			b.StopTimer()
			sp, fp := percentiles(sectorLat), percentiles(filesLat)
			b.ReportMetric(ms(sp[50]), "sector-p50-ms")
			b.ReportMetric(ms(sp[99]), "sector-p99-ms")
			b.ReportMetric(ms(fp[50]), "files-p50-ms")
			b.ReportMetric(ms(fp[99]), "files-p99-ms")
			b.ReportMetric(float64(fp[50])/float64(sp[50]), "files/sector-p50")
		})
	}
}
