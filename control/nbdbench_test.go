package control_test

import (
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
// cache); both devices are that size. Each iteration runs both arms in
// turn:
//
//   - seq: the whole device in 64 KiB reads, 8 goroutines taking the next;
//   - rand4k: 20000 reads of 4 KiB at random aligned offsets, 16
//     goroutines (queue depth 16).
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
	var uris []string
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
		sock := filepath.Join(dir, "s"+strconv.Itoa(i))
		runNbdkit(b, sock, "file", "file="+img)
		uris = append(uris, "nbd+unix:///?socket="+sock)
	}
	e, err := control.Open(control.Config{DB: filepath.Join(dir, "daxstack.db"), SysfsRoot: filepath.Join(dir, "nosys"), Daemon: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	sectors := size / 512
	two := fmt.Sprintf("0 %d striped 2 128 %s 0 %s 0", sectors, uris[0], uris[1])
	one := fmt.Sprintf("0 %d linear %s 0", sectors, uris[0])
	handles := map[string]control.Handle{}
	for name, table := range map[string]string{"two": two, "one": one} {
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
	for _, h := range handles {
		benchSeq(b, h, size) // connections up, page cache warm
	}
	b.Run("seq", func(b *testing.B) {
		var t2, t1 time.Duration
		for b.Loop() {
			t2 += benchSeq(b, handles["two"], size)
			t1 += benchSeq(b, handles["one"], size)
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
			t2 += benchRand(b, handles["two"], size, seed)
			t1 += benchRand(b, handles["one"], size, seed)
		}
		kiops := func(d time.Duration) float64 { return nbdBenchRandN * float64(b.N) / d.Seconds() / 1e3 }
		b.ReportMetric(kiops(t2), "two-kIOPS")
		b.ReportMetric(kiops(t1), "one-kIOPS")
		b.ReportMetric(kiops(t2)/kiops(t1), "two/one")
		b.ReportMetric(0, "ns/op")
	})
}

const nbdBenchRandN = 20000

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

func benchRand(b *testing.B, h control.Handle, size int64, seed uint64) time.Duration {
	var left atomic.Int64
	left.Store(nbdBenchRandN)
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
			b.Fatal("nbdkit did not start")
		}
	}
}
