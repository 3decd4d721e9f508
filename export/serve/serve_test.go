package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

// An engine whose exports are NBD only (no mount: no root needed), with
// the test's own group allowed.
func newNBDOnly(t *testing.T) (*control.Engine, *Exports, string, string) {
	t.Helper()
	dir := t.TempDir()
	eng, err := control.Open(control.Config{DB: filepath.Join(dir, "db"), Daemon: true, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	sock := filepath.Join(dir, "nbd.sock")
	x, err := Start(eng, Options{NoMount: true, NBDSocket: sock, Group: os.Getgid(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	leaf := filepath.Join(dir, "leaf.img")
	if err := os.WriteFile(leaf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(leaf, 8192*512)
	return eng, x, sock, leaf
}

func dial(t *testing.T, sock, name string) *nbd.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nbd.Dial(ctx, fmt.Sprintf("nbd+unix:///%s?socket=%s", name, sock), nbd.Options{MetaContexts: []string{nbd.BaseAllocation, BadBlocksContext}})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	return c
}

func TestNBDFollowsTheEngine(t *testing.T) {
	eng, _, sock, leaf := newNBDOnly(t)
	ctx := context.Background()
	table := fmt.Sprintf("0 8192 linear %s 0\n8192 2048 zero", leaf)
	if err := eng.Create(ctx, control.CreateReq{Name: "a", Table: &table}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, sock, "a")
	if got := c.Info().Size; got != 10240*512 {
		t.Errorf("size %d", got)
	}
	data := bytes.Repeat([]byte("nbd!"), 1024)
	if _, err := c.WriteAt(ctx, data, 4096, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := c.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	// A leaf's poison is a bad range of a, in daxstack:badblocks; a read
	// over it fails, and the next one on the connection works.
	if _, err := eng.Inject(ctx, control.RangeReq{Name: leaf, Sector: 100, Count: 3}); err != nil {
		t.Fatal(err)
	}
	st, err := c.BlockStatus(ctx, 0, 10240*512, false)
	if err != nil {
		t.Fatal(err)
	}
	if bad := st[BadBlocksContext]; !hasExtent(bad, 100*512, 3*512, BadBlock) {
		t.Errorf("daxstack:badblocks %v, want [51200 +1536]", bad)
	}
	if alloc := st[nbd.BaseAllocation]; !hasExtent(alloc, 8192*512, 2048*512, nbd.StateHole|nbd.StateZero) {
		t.Errorf("base:allocation %v, want the zero segment as a hole", alloc)
	}
	_, err = c.ReadAt(ctx, make([]byte, 4096), 98*512)
	var ne *nbd.Error
	if !errors.As(err, &ne) || !errors.Is(err, syscall.EIO) {
		t.Errorf("read over poison: %v, want an NBD EIO", err)
	}
	if _, err := c.ReadAt(ctx, got, 4096); err != nil {
		t.Errorf("the next read on the connection: %v", err)
	}

	// The connection makes a busy; --deferred waits for it.
	if err := eng.Remove(ctx, control.RemoveReq{Name: "a"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove with a connection: %v, want busy", err)
	}
	// A rename is followed: the export has the new name.
	if err := eng.Rename(ctx, control.RenameReq{Name: "a", New: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(ctx, got, 4096); err != nil {
		t.Errorf("read after rename on the open connection: %v", err)
	}
	c2 := dial(t, sock, "b")
	c2.Close()
	if err := eng.Remove(ctx, control.RemoveReq{Name: "b", Deferred: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Info(ctx, control.NameReq{Name: "b"}); err != nil {
		t.Fatalf("deferred removal happened with a connection open: %v", err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := eng.Info(ctx, control.NameReq{Name: "b"}); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deferred removal did not happen after the last connection closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasExtent(ext []nbd.Extent, off, n int64, flags uint32) bool {
	for _, e := range ext {
		if e.Offset == off && e.Length == n && e.Flags == flags {
			return true
		}
	}
	return false
}
