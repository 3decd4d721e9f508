package control_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/internal/testenv"
)

// BenchmarkNBDStripe reads through the engine's stacks over NBD leaves: a
// stripe of two nbdkit file servers (64 KiB chunks) against a linear
// device over one of them alone, in the same run. Each server serves a
// file of NBD_BENCH_SIZE MiB (default 64) of random bytes (in the page
// cache); both devices are that size, and no server serves both arms.
// Two settings: "local", the servers as they are (on this machine they
// share its cores with the client), and "serial", each server answering
// one request at a time and taking 1 ms more for each read (nbdkit's
// noparallel and delay filters), as a server whose own storage or link
// is the bottleneck. Each iteration runs both arms in turn:
//
//   - seq: the whole device in 64 KiB reads, 8 goroutines taking the next;
//   - rand4k: reads of 4 KiB at random aligned offsets (20000; 2000 in
//     "serial"), 16 goroutines (queue depth 16).
//
// Metrics: MB/s or kIOPS of each arm over all iterations, and two/one.
func BenchmarkNBDStripe(b *testing.B) {
	testenv.NeedCommand(b, "nbdkit")
	size := int64(64 << 20)
	if s, err := strconv.ParseInt(os.Getenv("NBD_BENCH_SIZE"), 10, 64); err == nil && s > 0 {
		size = s << 20
	}
	dir, err := os.MkdirTemp("", "nbdbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	var imgs []string
	for i := range 2 {
		img := filepath.Join(dir, "img"+strconv.Itoa(i))
		f, err := os.Create(img)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(f, rand.Reader, size); err != nil {
			b.Fatal(err)
		}
		f.Close()
		imgs = append(imgs, img)
	}
	for _, setting := range []struct {
		name           string
		filter, params []string
		randN          int
	}{
		{"local", nil, nil, 20000},
		{"serial", []string{"--filter=noparallel", "--filter=delay"}, []string{"serialize=all-requests", "rdelay=1ms"}, 2000},
	} {
		b.Run(setting.name, func(b *testing.B) {
			two, one := benchArms(b, filepath.Join(dir, setting.name), imgs, size, setting.filter, setting.params)
			benchSeq(b, two, size) // connections up, page cache warm
			benchSeq(b, one, size)
			b.Run("seq", func(b *testing.B) {
				var t2, t1 time.Duration
				for b.Loop() {
					t2 += benchSeq(b, two, size)
					t1 += benchSeq(b, one, size)
				}
				mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
				b.ReportMetric(mbs(t2), "two-MB/s")
				b.ReportMetric(mbs(t1), "one-MB/s")
				b.ReportMetric(mbs(t2)/mbs(t1), "two/one")
				b.ReportMetric(0, "ns/op")
			})
			b.Run("rand4k", func(b *testing.B) {
				var t2, t1 time.Duration
				seed := uint64(0)
				for b.Loop() {
					seed++
					t2 += benchRand(b, two, size, seed, setting.randN)
					t1 += benchRand(b, one, size, seed, setting.randN)
				}
				kiops := func(d time.Duration) float64 { return float64(setting.randN) * float64(b.N) / d.Seconds() / 1e3 }
				b.ReportMetric(kiops(t2), "two-kIOPS")
				b.ReportMetric(kiops(t1), "one-kIOPS")
				b.ReportMetric(kiops(t2)/kiops(t1), "two/one")
				b.ReportMetric(0, "ns/op")
			})
		})
	}
}

// benchArms starts nbdkit file servers (with filters and their
// parameters) on the images and returns handles of a stripe over both and
// of a linear device over the first, in an engine of their own in dir.
func benchArms(b *testing.B, dir string, imgs []string, size int64, filters, params []string) (two, one control.Handle) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	var uris []string
	// Servers 0 and 1 are the stripe's, server 2 (on the first image
	// again) the linear device's: the arms share no server, nor its rate.
	for i, img := range append(imgs, imgs[0]) {
		sock := filepath.Join(dir, "s"+strconv.Itoa(i))
		args := append(append(append([]string{}, filters...), "file", "file="+img), params...)
		runNbdkit(b, sock, args...)
		uris = append(uris, "nbd+unix:///?socket="+sock)
	}
	e, err := control.Open(control.Config{DB: filepath.Join(dir, "daxstack.db"), SysfsRoot: filepath.Join(dir, "nosys"), Daemon: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	sectors := size / 512
	tables := map[string]string{
		"two": fmt.Sprintf("0 %d striped 2 128 %s 0 %s 0", sectors, uris[0], uris[1]),
		"one": fmt.Sprintf("0 %d linear %s 0", sectors, uris[2]),
	}
	handles := map[string]control.Handle{}
	for name, table := range tables {
		if err := e.Create(bg, control.CreateReq{Name: name, Table: &table}); err != nil {
			b.Fatal(err)
		}
		h, err := e.Open(bg, control.OpenReq{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		handles[name] = h
	}
	return handles["two"], handles["one"]
}

func benchSeq(b *testing.B, h control.Handle, size int64) time.Duration {
	const piece = 64 << 10
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, piece)
			for {
				off := next.Add(piece) - piece
				if off >= size {
					return
				}
				if _, err := h.ReadAt(p, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func benchRand(b *testing.B, h control.Handle, size int64, seed uint64, n int) time.Duration {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start := time.Now()
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(seed, uint64(g)))
			p := make([]byte, 4096)
			for left.Add(-1) >= 0 {
				if _, err := h.ReadAt(p, rnd.Int64N(size/4096)*4096); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// runNbdkit runs nbdkit on a unix socket until the test ends.
func runNbdkit(b testing.TB, sock string, args ...string) {
	b.Helper()
	testenv.NeedCommand(b, "nbdkit")
	cmd := exec.Command("nbdkit", append([]string{"-f", "-U", sock}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("nbdkit %v did not start: %s", args, out.String())
		}
	}
}
