package nbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
// job. Each iteration measures both servers, alternating; the metrics are
// the best of the iterations for each, and ours/nbdkit. NBD_BENCH_SIZE
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

func benchServerOurs(b testing.TB, path string) string {
	f, err := nbdtest.OpenFile(path, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	dir := &nbdtest.Dir{}
	dir.Add("bench", f, nbdtest.Options{})
	return unixURI(serve(b, &nbd.Server{Exports: dir}), "bench")
}

// benchServers starts both servers on path and returns their URIs.
func benchServers(b *testing.B, path string) (ours, kit string) {
	testenv.NeedCommand(b, "nbdkit")
	ours = benchServerOurs(b, path)
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
	return ours, unixURI(ksock, "")
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
	ours, kit := benchServers(b, path)

	b.Run("seqread", func(b *testing.B) {
		best := map[string]float64{}
		for range b.N {
			for _, s := range []struct{ name, uri string }{{"ours", ours}, {"nbdkit", kit}} {
				d := timed(b, "nbdcopy", s.uri, "null:")
				best[s.name] = max(best[s.name], float64(fi.Size())/d.Seconds()/1e6)
			}
		}
		b.ReportMetric(best["ours"], "MB/s-ours")
		b.ReportMetric(best["nbdkit"], "MB/s-nbdkit")
		b.ReportMetric(best["ours"]/best["nbdkit"], "ratio")
	})

	b.Run("randread4k", func(b *testing.B) {
		best := map[string]float64{}
		for range b.N {
			for _, s := range []struct{ name, uri string }{{"ours", ours}, {"nbdkit", kit}} {
				best[s.name] = max(best[s.name], fioIOPS(b, s.uri))
			}
		}
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
