package blockdev

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/internal/testdev"
	"github.com/daxstack/daxstack/export/linux"
	"github.com/daxstack/daxstack/internal/testenv"
)

// BenchmarkFio measures fio (libaio, O_DIRECT) on the block device of an
// export (a direct-I/O loop over the devfs file, served by a test device
// that copies from and to a shared mapping of a leaf file, as the engine's
// file leaves do) against a direct-I/O loop device
// straight on the same leaf file, in one run: sequential 1 MiB reads and
// writes at queue depth 16, random 4 KiB reads and writes at queue depth
// 32. The two alternate, round by round, so both see the same machine; the
// metric is the median over rounds and the ratio of medians. The *Lent
// reads go through a second export of the same leaf whose device lends its
// bytes (devfs.ReadLender) instead of copying them out.
//
// The leaf lives in memory (a directory under /dev/shm, or
// DAXSTACK_BENCH_DIR) so that neither side waits for a disk. Rounds and
// seconds per fio run: DAXSTACK_BENCH_ROUNDS (5), DAXSTACK_BENCH_SECONDS
// (3). The devfs mount's MaxWrite and MaxBackground:
// DAXSTACK_BENCH_MAXWRITE, DAXSTACK_BENCH_MAXBG (defaults of devfs);
// DAXSTACK_BENCH_SYNCDIO=1 turns asynchronous direct I/O off.
//
//	go test ./export/blockdev -run '^$' -bench Fio -benchtime 1x
func BenchmarkFio(b *testing.B) {
	testdev.NeedLoop(b)
	testenv.NeedCommand(b, "fio")
	rounds := envInt("DAXSTACK_BENCH_ROUNDS", 5)
	secs := envInt("DAXSTACK_BENCH_SECONDS", 3)
	const size = 1 << 30

	dir := os.Getenv("DAXSTACK_BENCH_DIR")
	if dir == "" {
		dir = "/dev/shm"
	}
	leafDir, err := os.MkdirTemp(dir, "daxstack-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(leafDir) })
	leaf := filepath.Join(leafDir, "leaf")
	d, err := testdev.NewMapped(leaf, size)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	// Fill the leaf, so that reads copy real pages on both sides.
	if out, err := exec.Command("dd", "if=/dev/urandom", "of="+leaf, "bs=1M", "count=1024", "conv=notrunc").CombinedOutput(); err != nil {
		b.Fatalf("fill: %v\n%s", err, out)
	}

	fs, err := devfs.Mount(filepath.Join(b.TempDir(), "dev"), devfs.Options{
		MaxWrite:      envInt("DAXSTACK_BENCH_MAXWRITE", 0),
		MaxBackground: envInt("DAXSTACK_BENCH_MAXBG", 0),
		SyncDIO:       os.Getenv("DAXSTACK_BENCH_SYNCDIO") == "1",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Close() })
	lk := b.TempDir()
	m, err := New(fs, Options{LinkDir: filepath.Join(lk, "links"), MapperDir: filepath.Join(lk, "mapper"), MapperLinks: MapperOff})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	x, err := m.Add("bench", d, devfs.Attr{Size: size})
	if err != nil {
		b.Fatal(err)
	}
	// The same leaf again, through a device that lends its bytes
	// (devfs.ReadLender): one copy per read instead of two.
	xl, err := m.Add("lent", testdev.Lending{Dev: d}, devfs.Attr{Size: size})
	if err != nil {
		b.Fatal(err)
	}
	lf, err := os.OpenFile(leaf, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	base, err := linux.AttachLoop(lf, linux.LoopConfig{DirectIO: true})
	lf.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { linux.DetachLoop(base.Path) })
	b.Logf("devfs %+v; export %s, baseline %s; leaf %s", fs.Settings(), x.Loop.Path, base.Path, leaf)

	for _, job := range []struct {
		name, rw, bs string
		depth        int
		random, lent bool
	}{
		{"SeqRead1M", "read", "1M", 16, false, false},
		{"SeqRead1MLent", "read", "1M", 16, false, true},
		{"SeqWrite1M", "write", "1M", 16, false, false},
		{"RandRead4K", "randread", "4k", 32, true, false},
		{"RandRead4KLent", "randread", "4k", 32, true, true},
		{"RandWrite4K", "randwrite", "4k", 32, true, false},
	} {
		ours := x.Loop.Path
		if job.lent {
			ours = xl.Loop.Path
		}
		b.Run(job.name, func(b *testing.B) {
			var mine, theirs []float64
			var cpu time.Duration // the server's (this process's) CPU time in the export's runs
			var work float64      // bytes (sequential) or I/Os (random) it served
			for r := 0; r < rounds; r++ {
				for _, side := range []string{base.Path, ours} {
					c0 := cpuTime()
					v, err := fio(side, job.rw, job.bs, job.depth, secs, job.random)
					if err != nil {
						b.Fatal(err)
					}
					if side == base.Path {
						theirs = append(theirs, v)
					} else {
						mine = append(mine, v)
						cpu += cpuTime() - c0
						work += v * (float64(secs) + 0.5) // fio ramps up for half a second
					}
				}
			}
			unit := "MB/s"
			if job.random {
				unit = "IOPS"
			}
			mo, mt := median(mine), median(theirs)
			b.ReportMetric(mo, unit)
			b.ReportMetric(mt, "baseline-"+unit)
			b.ReportMetric(mo/mt, "ratio")
			if job.random {
				b.ReportMetric(float64(cpu.Nanoseconds())/1e3/work, "server-cpu-us/IO")
			} else {
				b.ReportMetric(cpu.Seconds()/(work/1e3), "server-cpu-s/GB")
			}
			b.Logf("%s: export %s, baseline %s %s; per round ratios %s; load %s", job.name, fmtList(mine), fmtList(theirs), unit, ratios(mine, theirs), loadavg())
		})
	}
}

// fio runs one job and returns MB/s (sequential) or IOPS (random).
func fio(dev, rw, bs string, depth, secs int, random bool) (float64, error) {
	out, err := exec.Command("fio", "--name=bench", "--filename="+dev, "--direct=1", "--ioengine=libaio",
		"--rw="+rw, "--bs="+bs, "--iodepth="+strconv.Itoa(depth), "--runtime="+strconv.Itoa(secs), "--time_based",
		"--ramp_time=0.5", "--output-format=json").Output()
	if err != nil {
		return 0, fmt.Errorf("fio %s %s: %v\n%s", rw, dev, err, out)
	}
	var res struct {
		Jobs []struct {
			Read, Write struct {
				BwBytes float64 `json:"bw_bytes"`
				IOPS    float64 `json:"iops"`
			}
		}
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
		return 0, fmt.Errorf("fio output: %v\n%s", err, out)
	}
	io := res.Jobs[0].Read
	if strings.Contains(rw, "write") {
		io = res.Jobs[0].Write
	}
	if random {
		return io.IOPS, nil
	}
	return io.BwBytes / 1e6, nil
}

// cpuTime is this process's user and system time (the devfs server's,
// with the benchmark's own small share).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtList(v []float64) string {
	p := make([]string, len(v))
	for i, x := range v {
		p[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(p, " ")
}

func ratios(a, b []float64) string {
	p := make([]string, len(a))
	for i := range a {
		p[i] = strconv.FormatFloat(a[i]/b[i], 'f', 2, 64)
	}
	return strings.Join(p, " ")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
