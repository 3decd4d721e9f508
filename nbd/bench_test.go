package nbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// The server against nbdkit's file plugin, serving the same file in the
// same run, with the clients the issue names:
//
//	go test ./nbd -run '^$' -bench NbdkitFile -benchtime 3x
//
// seqread: nbdcopy of the whole export to null: (its defaults: 4
// connections when the server allows multi-conn, 64 requests of 256 KiB in
// flight). randread4k: fio's nbd engine, 4 KiB random reads, QD16, one
// job. Each iteration measures the servers in turn; the metrics are the
// best of the iterations for each, ours/nbdkit (ratio), and the CPU time
// each server used. "ours" is the export with its defaults, "ours1" the
// same with Export.MaxParallel 1 (one request of a connection at a time
// on the backend: nbdcopy's four connections still read in parallel),
// "mmap" an nbdtest.Mapped device of the same file with MaxParallel 1
// (copies from a shared mapping, as daxstack's engine reads a file leaf). NBD_BENCH_SIZE
// sets the file's size in MiB (default 1024); the file is written with
// random bytes first, so it is all data and in the page cache.

func benchFile(b *testing.B) string { return benchFileT(b) }

func benchFileT(b testing.TB) string {
	size := int64(1024)
	if s, err := strconv.ParseInt(os.Getenv("NBD_BENCH_SIZE"), 10, 64); err == nil && s > 0 {
		size = s
	}
	path := filepath.Join(b.TempDir(), "bench.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size<<20); err != nil {
		b.Fatal(err)
	}
	return path
}

func benchServerOurs(b testing.TB, path string, parallel int) string {
	f, err := nbdtest.OpenFile(path, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	dir := &nbdtest.Dir{}
	dir.Add("bench", f, nbdtest.Options{MaxParallel: parallel})
	return unixURI(serve(b, &nbd.Server{Exports: dir}), "bench")
}

// benchServers starts both servers on path and returns their URIs.
func benchServerMapped(b testing.TB, path string) string {
	m, err := nbdtest.MapFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	dir := &nbdtest.Dir{}
	dir.Add("bench", m, nbdtest.Options{MaxParallel: 1})
	return unixURI(serve(b, &nbd.Server{Exports: dir}), "bench")
}

func benchServers(b *testing.B, path string) (ours, ours1, mapped, kit string, kitPID int) {
	testenv.NeedCommand(b, "nbdkit")
	ours = benchServerOurs(b, path, 0)
	ours1 = benchServerOurs(b, path, 1)
	mapped = benchServerMapped(b, path)
	ksock := filepath.Join(b.TempDir(), "nbdkit.sock")
	cmd := exec.Command("nbdkit", "-f", "--exit-with-parent", "-U", ksock, "file", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(ksock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nbdkit did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ours, ours1, mapped, unixURI(ksock, ""), cmd.Process.Pid
}

func timed(b *testing.B, name string, args ...string) time.Duration {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	return time.Since(start)
}

func BenchmarkNbdkitFile(b *testing.B) {
	testenv.NeedCommand(b, "nbdcopy")
	testenv.NeedCommand(b, "fio")
	path := benchFile(b)
	fi, _ := os.Stat(path)
	ours, ours1, mapped, kit, kitPID := benchServers(b, path)
	// CPU time spent by each server: this process (the harness itself
	// is idle while a client runs) and nbdkit's. Less noisy than wall
	// time on a shared machine.
	cpu := map[string]func() time.Duration{"ours": selfCPU, "ours1": selfCPU, "mmap": selfCPU,
		"nbdkit": func() time.Duration { return procCPU(b, kitPID) }}
	servers := []struct{ name, uri string }{{"ours", ours}, {"ours1", ours1}, {"mmap", mapped}, {"nbdkit", kit}}

	b.Run("seqread", func(b *testing.B) {
		best := map[string]float64{}
		used := map[string]time.Duration{}
		for range b.N {
			for _, s := range servers {
				c0 := cpu[s.name]()
				d := timed(b, "nbdcopy", s.uri, "null:")
				used[s.name] += cpu[s.name]() - c0
				best[s.name] = max(best[s.name], float64(fi.Size())/d.Seconds()/1e6)
			}
		}
		gib := float64(fi.Size()) / (1 << 30) * float64(b.N)
		b.ReportMetric(best["ours"], "MB/s-ours")
		b.ReportMetric(best["nbdkit"], "MB/s-nbdkit")
		b.ReportMetric(best["ours"]/best["nbdkit"], "ratio")
		b.ReportMetric(float64(used["ours"].Milliseconds())/gib, "cpu-ms/GiB-ours")
		b.ReportMetric(float64(used["nbdkit"].Milliseconds())/gib, "cpu-ms/GiB-nbdkit")
		b.ReportMetric(best["ours1"], "MB/s-ours1")
		b.ReportMetric(best["ours1"]/best["nbdkit"], "ratio1")
		b.ReportMetric(float64(used["ours1"].Milliseconds())/gib, "cpu-ms/GiB-ours1")
		b.ReportMetric(best["mmap"], "MB/s-mmap")
		b.ReportMetric(best["mmap"]/best["nbdkit"], "ratio-mmap")
		b.ReportMetric(float64(used["mmap"].Milliseconds())/gib, "cpu-ms/GiB-mmap")
	})

	b.Run("randread4k", func(b *testing.B) {
		best := map[string]float64{}
		used := map[string]time.Duration{}
		ops := map[string]float64{}
		for range b.N {
			for _, s := range servers {
				c0 := cpu[s.name]()
				iops := fioIOPS(b, s.uri)
				used[s.name] += cpu[s.name]() - c0
				ops[s.name] += iops * 6 // 1 s of ramp and 5 s measured
				best[s.name] = max(best[s.name], iops)
			}
		}
		b.ReportMetric(float64(used["ours"].Nanoseconds())/1e3/ops["ours"], "cpu-us/op-ours")
		b.ReportMetric(float64(used["nbdkit"].Nanoseconds())/1e3/ops["nbdkit"], "cpu-us/op-nbdkit")
		b.ReportMetric(best["ours1"], "IOPS-ours1")
		b.ReportMetric(best["ours1"]/best["nbdkit"], "ratio1")
		b.ReportMetric(float64(used["ours1"].Nanoseconds())/1e3/ops["ours1"], "cpu-us/op-ours1")
		b.ReportMetric(best["mmap"], "IOPS-mmap")
		b.ReportMetric(best["mmap"]/best["nbdkit"], "ratio-mmap")
		b.ReportMetric(float64(used["mmap"].Nanoseconds())/1e3/ops["mmap"], "cpu-us/op-mmap")
		b.ReportMetric(best["ours"], "IOPS-ours")
		b.ReportMetric(best["nbdkit"], "IOPS-nbdkit")
		b.ReportMetric(best["ours"]/best["nbdkit"], "ratio")
	})
}

func fioIOPS(b *testing.B, uri string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "fio", "--name=rr", "--ioengine=nbd", "--uri="+uri,
		"--rw=randread", "--bs=4k", "--iodepth=16", "--numjobs=1", "--time_based", "--runtime=5",
		"--ramp_time=1", "--output-format=json").Output()
	if err != nil {
		b.Fatalf("fio: %v\n%s", err, out)
	}
	var res struct {
		Jobs []struct {
			Read struct {
				IOPS float64 `json:"iops"`
			} `json:"read"`
		} `json:"jobs"`
	}
	// fio may print notes before its JSON.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
		b.Fatalf("fio output: %v\n%s", err, out)
	}
	return res.Jobs[0].Read.IOPS
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system time of process pid, from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which is in parentheses): utime and stime
	// are the 12th and 13th.
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * time.Second / 100 // USER_HZ
}

// BenchmarkRead4k is the read path of client and server in this process
// (one connection, 16 readers): its allocs/op say whether the hot path
// allocates.
func BenchmarkRead4k(b *testing.B) {
	srv, _, _ := memServer(b, 64<<20, nbdtest.Options{})
	c := dial(b, unixURI(serve(b, srv), "mem"), nbd.Options{})
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 4096)
		var off int64
		for pb.Next() {
			if _, err := c.ReadAt(context.Background(), p, off); err != nil {
				b.Error(err)
				return
			}
			off = (off + 1<<20 + 4096) % (64 << 20)
		}
	})
}
