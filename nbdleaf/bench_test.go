package nbdleaf_test

import (
	"context"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbdleaf"
)

// The leaf layer under a stripe, against one server alone, in the same
// run:
//
//	go test ./nbdleaf -run '^$' -bench Stripe -benchtime 5x
//
// Two nbdkit file servers, each on a file of NBDLEAF_BENCH_SIZE MiB
// (default 256) of random bytes (in the page cache). A stripe of two
// leaves with 64 KiB chunks sends chunk i to leaf i%2 at chunk i/2; the
// benchmark does what it would do with the pieces, from parallel
// goroutines, without the stack above (whose I/O path is not this
// package's):
//
//   - seq: the first NBDLEAF_BENCH_SIZE MiB of the striped address space
//     in 64 KiB pieces, 8 goroutines taking the next piece;
//   - rand4k: 20000 reads of 4 KiB at random 4 KiB-aligned offsets of the
//     same span, 16 goroutines (queue depth 16).
//
// Each iteration runs every arm once, in turn: "two" (the stripe's two
// leaves), "one" (one leaf alone, the same bytes from one server) and
// "raw" (nbd.Client connections to that one server, as many as the leaf
// keeps, without the leaf: the cost of the layer). Metrics are MB/s (seq)
// or kIOPS (rand4k) of each arm over all iterations, and two/one and
// one/raw.

const (
	benchChunk = 64 << 10
	benchSeqP  = 8
	benchRandP = 16
	benchRandN = 20000
)

func benchSize() int64 {
	if s, err := strconv.ParseInt(os.Getenv("NBDLEAF_BENCH_SIZE"), 10, 64); err == nil && s > 0 {
		return s << 20
	}
	return 256 << 20
}

// reader is what an arm reads through.
type reader func(p []byte, off int64) error

// benchSetup starts two nbdkit file servers and returns the arms' readers
// for a striped address space of span bytes.
func benchSetup(b *testing.B) (two, one, raw reader, span int64) {
	size := benchSize()
	dir := b.TempDir()
	var uris []string
	for i := range 2 {
		file := filepath.Join(dir, "img"+strconv.Itoa(i))
		f, err := os.Create(file)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(f, rand.Reader, size); err != nil {
			b.Fatal(err)
		}
		f.Close()
		sock := filepath.Join(dir, "s"+strconv.Itoa(i))
		startNbdkit(b, sock, "file", file)
		uris = append(uris, unixURI(sock, ""))
	}
	o := opener(nil, nil)
	leaves := []*nbdleaf.Leaf{open(b, o, uris[0]), open(b, o, uris[1])}
	for _, l := range leaves {
		waitFor(b, 5*time.Second, "connections", func() bool { return l.Connected() == nbdleaf.DefaultConns })
	}
	var clients []*nbd.Client
	for range nbdleaf.DefaultConns {
		c, err := nbd.Dial(context.Background(), uris[0], nbd.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	var rr atomic.Uint32
	leafRead := func(l *nbdleaf.Leaf) reader {
		return func(p []byte, off int64) error { _, err := l.ReadAt(p, off); return err }
	}
	two = func(p []byte, off int64) error {
		c := off / benchChunk
		return leafRead(leaves[c%2])(p, (c/2)*benchChunk+off%benchChunk)
	}
	one = leafRead(leaves[0])
	raw = func(p []byte, off int64) error {
		_, err := clients[rr.Add(1)%uint32(len(clients))].ReadAt(context.Background(), p, off)
		return err
	}
	return two, one, raw, size
}

// seqPass reads [0, span) in chunk pieces from benchSeqP goroutines.
func seqPass(b *testing.B, r reader, span int64) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchSeqP {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, benchChunk)
			for {
				off := next.Add(benchChunk) - benchChunk
				if off >= span {
					return
				}
				if err := r(p, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// randPass makes benchRandN reads of 4 KiB at random offsets of [0, span)
// from benchRandP goroutines.
func randPass(b *testing.B, r reader, span int64, seed uint64) time.Duration {
	var left atomic.Int64
	left.Store(benchRandN)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range benchRandP {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(seed, uint64(g)))
			p := make([]byte, 4096)
			for left.Add(-1) >= 0 {
				if err := r(p, rnd.Int64N(span/4096)*4096); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func BenchmarkStripe(b *testing.B) {
	two, one, raw, span := benchSetup(b)
	// Warm up each arm once (page cache, connections).
	seqPass(b, two, span)
	seqPass(b, one, span)
	b.Run("seq", func(b *testing.B) {
		var t2, t1, tr time.Duration
		for b.Loop() {
			t2 += seqPass(b, two, span)
			t1 += seqPass(b, one, span)
			tr += seqPass(b, raw, span)
		}
		mbs := func(d time.Duration) float64 { return float64(span) * float64(b.N) / d.Seconds() / 1e6 }
		b.ReportMetric(mbs(t2), "two-MB/s")
		b.ReportMetric(mbs(t1), "one-MB/s")
		b.ReportMetric(mbs(tr), "raw-MB/s")
		b.ReportMetric(mbs(t2)/mbs(t1), "two/one")
		b.ReportMetric(mbs(t1)/mbs(tr), "one/raw")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("rand4k", func(b *testing.B) {
		var t2, t1, tr time.Duration
		i := uint64(0)
		for b.Loop() {
			i++
			t2 += randPass(b, two, span, i)
			t1 += randPass(b, one, span, i)
			tr += randPass(b, raw, span, i)
		}
		kiops := func(d time.Duration) float64 { return benchRandN * float64(b.N) / d.Seconds() / 1e3 }
		b.ReportMetric(kiops(t2), "two-kIOPS")
		b.ReportMetric(kiops(t1), "one-kIOPS")
		b.ReportMetric(kiops(tr), "raw-kIOPS")
		b.ReportMetric(kiops(t2)/kiops(t1), "two/one")
		b.ReportMetric(kiops(t1)/kiops(tr), "one/raw")
		b.ReportMetric(0, "ns/op")
	})
}
