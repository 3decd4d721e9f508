package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/service"
	_ "github.com/daxstack/daxstack/targets/all"
)

// daemon is a Server serving in this process on a socket in a temporary
// directory, with a file leaf.
type daemon struct {
	dir, sock, db string
	srv           *service.Server
	cancel        context.CancelFunc
	done          chan error
}

// startDaemon starts a server on a new database in dir (a temporary
// directory when empty), without uevents and with an hour between
// periodic rescans, and stops it when tb ends.
func startDaemon(tb testing.TB, dir string, cfg service.Config) *daemon {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "daxstack.sock"), db: filepath.Join(dir, "daxstack.db"), done: make(chan error, 1)}
	cfg.Engine.DB, cfg.Engine.LockTimeout = d.db, 5*time.Second
	cfg.Engine.SysfsRoot = filepath.Join(dir, "nosys")
	cfg.Socket = d.sock
	if cfg.Rescan == 0 {
		cfg.Rescan = time.Hour
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	srv, err := service.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	d.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- srv.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("daemon did not listen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Cleanup(d.stop)
	return d
}

func (d *daemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.done
}

// leaf makes a zero-filled file of sectors sectors in the daemon's
// directory.
func (d *daemon) leaf(tb testing.TB, name string, sectors int64) string {
	tb.Helper()
	p := filepath.Join(d.dir, name)
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(sectors * 512); err != nil {
		tb.Fatal(err)
	}
	return p
}

// client dials the daemon and closes the client when tb ends.
func (d *daemon) client(tb testing.TB) *service.Client {
	tb.Helper()
	c, err := service.Dial(d.sock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// call runs method through c and decodes its result into out (may be
// nil), failing tb on error.
func call(tb testing.TB, c *service.Client, method string, req, out any) {
	tb.Helper()
	p, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := c.Call(context.Background(), method, p)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, p, err)
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			tb.Fatalf("%s: result %s: %v", method, res, err)
		}
	}
}

// create makes a mapped device with table text.
func create(tb testing.TB, c *service.Client, name, table string) {
	tb.Helper()
	call(tb, c, "create", control.CreateReq{Name: name, Table: &table}, nil)
}

// lastSeq returns the last sequence number of the event log.
func lastSeq(tb testing.TB, c *service.Client) uint64 {
	tb.Helper()
	var r control.EventsResp
	call(tb, c, "events", control.EventsReq{Since: ^uint64(0) - 1}, &r)
	return r.Last
}

var _ = fmt.Sprint
