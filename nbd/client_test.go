package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

func dial(t testing.TB, uri string, opt nbd.Options) *nbd.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbd.Dial(ctx, uri, opt)
	if err != nil {
		t.Fatalf("Dial %s: %v", uri, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientRoundTrip(t *testing.T) {
	for _, structured := range []bool{true, false} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			srv, _, m := memServer(t, 8<<20, nbdtest.Options{Description: "desc"})
			srv.MaxPayload = 1 << 20 // reads and writes of 3 MiB go in pieces
			sock := serve(t, srv)
			c := dial(t, unixURI(sock, "mem"), nbd.Options{NoStructuredReplies: !structured})
			info := c.Info()
			if info.Size != 8<<20 || info.Description != "desc" || info.Structured != structured || info.Name != "mem" {
				t.Fatalf("info %+v", info)
			}
			if info.BlockSizes.MaxPayload != 1<<20 {
				t.Errorf("max payload %d", info.BlockSizes.MaxPayload)
			}
			ctx := context.Background()
			want := make([]byte, 8<<20)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					src := rand.NewChaCha8([32]byte{byte(g)})
					r := rand.New(src)
					for range 12 {
						off := r.IntN(8<<20-4096) &^ 511
						n := min(1+r.IntN(3<<20)&^511, 8<<20-off)
						p := make([]byte, n)
						src.Read(p)
						// Each goroutine writes its own stripe of the device
						// so the expected image is well defined.
						mu.Lock()
						if _, err := c.WriteAt(ctx, p, int64(off), r.IntN(2) == 0); err != nil {
							mu.Unlock()
							t.Error(err)
							return
						}
						copy(want[off:], p)
						mu.Unlock()
						got := make([]byte, n)
						if _, err := c.ReadAt(ctx, got, int64(off)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			got := make([]byte, 8<<20)
			if n, err := c.ReadAt(ctx, got, 0); err != nil || n != len(got) {
				t.Fatalf("read %d: %v", n, err)
			}
			if !bytes.Equal(got, want) || !bytes.Equal(m.Bytes(), want) {
				t.Fatal("contents differ")
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.WriteZeroes(ctx, 4096, 8192, nbd.ZeroNoHole); err != nil {
				t.Fatal(err)
			}
			if err := c.Trim(ctx, 0, 4096, false); err != nil {
				t.Fatal(err)
			}
			clear(want[4096 : 4096+8192])
			if !bytes.Equal(m.Bytes()[4096:12288], want[4096:12288]) {
				t.Fatal("write zeroes did not zero")
			}
		})
	}
}

func TestClientReadError(t *testing.T) {
	for _, structured := range []bool{true, false} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			srv, _, m := memServer(t, 1<<20, nbdtest.Options{})
			m.Bad.Add(5000, 100)
			sock := serve(t, srv)
			c := dial(t, unixURI(sock, "mem"), nbd.Options{NoStructuredReplies: !structured})
			ctx := context.Background()
			p := make([]byte, 8192)
			n, err := c.ReadAt(ctx, p, 4096)
			if !errors.Is(err, syscall.EIO) || !errors.Is(err, nbd.EIO) {
				t.Fatalf("read over a bad range: %d, %v; want EIO", n, err)
			}
			var ne *nbd.Error
			if !errors.As(err, &ne) {
				t.Fatalf("%T is not *nbd.Error", err)
			}
			if structured {
				if !ne.HasOffset || ne.Offset != 5000 || n != 5000-4096 {
					t.Errorf("structured: n %d, offset %d (%v); want 904, 5000", n, ne.Offset, ne.HasOffset)
				}
			} else if ne.HasOffset || n != 0 {
				t.Errorf("simple: n %d, has offset %v; want 0, none", n, ne.HasOffset)
			}
			// The next request on the same connection succeeds.
			if _, err := c.ReadAt(ctx, p, 8192); err != nil {
				t.Fatalf("read after the failure: %v", err)
			}
			// A write over the range clears it, and it reads again.
			if _, err := c.WriteAt(ctx, make([]byte, 512), 4608, false); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadAt(ctx, p, 4096); err != nil {
				t.Fatalf("read after the write: %v", err)
			}
		})
	}
}

func TestClientBlockStatus(t *testing.T) {
	srv, _, m := memServer(t, 1<<20, nbdtest.Options{})
	m.Bad.Add(10000, 3000)
	sock := serve(t, srv)
	c := dial(t, unixURI(sock, "mem"), nbd.Options{MetaContexts: []string{nbd.BaseAllocation, nbdtest.BadContext, "unknown:x"}})
	if got := fmt.Sprint(c.Info().MetaContexts); got != "[base:allocation daxstack:badblocks]" {
		t.Fatalf("contexts %s", got)
	}
	ctx := context.Background()
	if _, err := c.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 16384, false); err != nil {
		t.Fatal(err)
	}
	got, err := c.BlockStatus(ctx, 0, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]nbd.Extent{
		nbd.BaseAllocation: {{0, 16384, 3}, {16384, 4096, 0}, {20480, 1<<20 - 20480, 3}},
		nbdtest.BadContext: {{0, 10000, 0}, {10000, 3000, 1}, {13000, 1<<20 - 13000, 0}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("block status\n got %v\nwant %v", got, want)
	}
	one, err := c.BlockStatus(ctx, 9000, 100000, true)
	if err != nil {
		t.Fatal(err)
	}
	wantOne := map[string][]nbd.Extent{
		nbd.BaseAllocation: {{9000, 7384, 3}},
		nbdtest.BadContext: {{9000, 1000, 0}},
	}
	if fmt.Sprint(one) != fmt.Sprint(wantOne) {
		t.Errorf("REQ_ONE\n got %v\nwant %v", one, wantOne)
	}
}

// gatedDevice is a Mem whose reads wait until the gate is closed.
type gatedDevice struct {
	*nbdtest.Mem
	gate chan struct{}
}

func (g gatedDevice) Handle(gone <-chan struct{}) nbd.Backend {
	return gatedHandle{Backend: g.Mem.Handle(gone), gate: g.gate}
}

type gatedHandle struct {
	nbd.Backend
	gate chan struct{}
}

func (h gatedHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	<-h.gate
	return h.Backend.ReadAt(ctx, p, off)
}

// TestClientAbandon: a request whose context ends returns at once, and
// its reply, when it comes, is not written into the caller's buffer; the
// connection goes on.
func TestClientAbandon(t *testing.T) {
	m := nbdtest.NewMem(1 << 20)
	gate := make(chan struct{})
	dir := &nbdtest.Dir{}
	dir.Add("slow", gatedDevice{m, gate}, nbdtest.Options{})
	sock := serve(t, &nbd.Server{Exports: dir})
	c := dial(t, unixURI(sock, "slow"), nbd.Options{})
	if _, err := c.WriteAt(context.Background(), bytes.Repeat([]byte{7}, 4096), 0, false); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.ReadAt(ctx, p, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned read: %v", err)
	}
	close(gate)
	// The next read on the connection gets its own data; the abandoned
	// one's never lands in p.
	q := make([]byte, 4096)
	if _, err := c.ReadAt(context.Background(), q, 0); err != nil || q[0] != 7 {
		t.Fatalf("read after: %v, %d", err, q[0])
	}
	if !bytes.Equal(p, make([]byte, 4096)) {
		t.Error("the abandoned read wrote into its buffer after it returned")
	}
}

// TestClientAbandonMany abandons requests of every kind at random moments
// on two connections at once: an abandoned call belongs to the reader,
// which may pool it for another request at once, so the caller must not
// read it afterwards (-race saw that), and every request that does
// complete gets its own answer.
func TestClientAbandonMany(t *testing.T) {
	m := nbdtest.NewMem(1 << 20)
	for b := range 256 {
		m.Handle(nil).WriteAt(context.Background(), bytes.Repeat([]byte{byte(b)}, 4096), int64(b)*4096, false)
	}
	m.Bad.Add(100*4096, 512)
	dir := &nbdtest.Dir{}
	dir.Add("mem", m, nbdtest.Options{})
	sock := serve(t, &nbd.Server{Exports: dir})
	opt := nbd.Options{MetaContexts: []string{nbdtest.BadContext}}
	clients := []*nbd.Client{dial(t, unixURI(sock, "mem"), opt), dial(t, unixURI(sock, "mem"), opt)}
	var wg sync.WaitGroup
	end := time.Now().Add(300 * time.Millisecond)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			p := make([]byte, 4096)
			for time.Now().Before(end) {
				c := clients[r.IntN(2)]
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(40))*time.Microsecond)
				b := r.IntN(256)
				switch r.IntN(3) {
				case 0:
					if _, err := c.ReadAt(ctx, p, int64(b)*4096); err == nil && b != 100 && !bytes.Equal(p, bytes.Repeat([]byte{byte(b)}, 4096)) {
						t.Errorf("block %d read another's bytes", b)
					}
				case 1:
					if ext, err := c.BlockStatus(ctx, int64(b)*4096, 4096, false); err == nil {
						e := ext[nbdtest.BadContext]
						if len(e) == 0 || e[0].Offset != int64(b)*4096 || (e[0].Flags == 1) != (b == 100) {
							t.Errorf("block status of block %d: %v", b, e)
						}
					}
				case 2:
					c.Flush(ctx)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
}

// countingDevice records the most reads its handles served at once.
type countingDevice struct {
	*nbdtest.Mem
	now, most *atomic.Int64
}

func (d countingDevice) Handle(gone <-chan struct{}) nbd.Backend {
	return countingHandle{Backend: d.Mem.Handle(gone), d: d}
}

type countingHandle struct {
	nbd.Backend
	d countingDevice
}

func (h countingHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := h.d.now.Add(1)
	for m := h.d.most.Load(); n > m && !h.d.most.CompareAndSwap(m, n); m = h.d.most.Load() {
	}
	time.Sleep(time.Millisecond)
	defer h.d.now.Add(-1)
	return h.Backend.ReadAt(ctx, p, off)
}

func TestMaxParallel(t *testing.T) {
	for _, tc := range []struct{ parallel int64 }{{1}, {0}} {
		dev := countingDevice{nbdtest.NewMem(1 << 20), new(atomic.Int64), new(atomic.Int64)}
		dir := &nbdtest.Dir{}
		dir.Add("x", dev, nbdtest.Options{MaxParallel: int(tc.parallel)})
		c := dial(t, unixURI(serve(t, &nbd.Server{Exports: dir}), "x"), nbd.Options{})
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := make([]byte, 4096)
				if _, err := c.ReadAt(context.Background(), p, int64(i)*4096); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := dev.most.Load(); (tc.parallel == 1 && got != 1) || (tc.parallel == 0 && got < 2) {
			t.Errorf("MaxParallel %d: %d reads at once on the backend", tc.parallel, got)
		}
	}
}
