package service_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/service"
	"github.com/daxstack/daxstack/stack"
)

var bg = context.Background()

// TestParkedReadSurvivesRefusal is the hang through the daemon:
// suspend top, start a read of it, send a refused create, resume top: the
// read, parked on the suspended device, returns.
func TestParkedReadSurvivesRefusal(t *testing.T) {
	d := startDaemon(t, "", service.Config{})
	c := d.client(t)
	stackOf(t, d, c)
	if err := c.Suspend(bg, control.SuspendReq{Name: "top"}); err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(bg, control.OpenReq{Name: "top"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	read := make(chan error, 1)
	go func() {
		_, err := h.ReadAt(make([]byte, 4096), 0)
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("read of a suspended device returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	bad := "0 8 nosuchtarget"
	if err := c.Create(bg, control.CreateReq{Name: "bad", Table: &bad}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("refused create: %v", err)
	}
	if err := c.Resume(bg, control.SuspendReq{Name: "top"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked read never returned")
	}
}

// TestHandleThroughTheDaemon: a handle's I/O travels as binary frames: the
// bytes come back as written, in requests larger than one frame; the end
// of the device, a failing sector (the same *stack.IOError as in the
// engine) and a read-only handle behave as a local handle does; a read
// waiting for a suspended device ends with its context.
func TestHandleThroughTheDaemon(t *testing.T) {
	d := startDaemon(t, "", service.Config{})
	c := d.client(t)
	stackOf(t, d, c)
	h, err := c.Open(bg, control.OpenReq{Name: "top", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Size() != 4000*512 || h.ReadOnly() {
		t.Fatalf("size %d, read-only %v", h.Size(), h.ReadOnly())
	}
	if info := info(t, c, "top"); info.Open != 1 {
		t.Fatalf("open count with a daemon handle: %d", info.Open)
	}
	// More than one frame's worth, on a device large enough.
	create(t, c, "big", "0 12288 linear "+d.leaf(t, "big.img", 12288)+" 0")
	bh, err := c.Open(bg, control.OpenReq{Name: "big", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, control.MaxIO+3*512)
	for i := range data {
		data[i] = byte(i * 31)
	}
	if n, err := bh.WriteAt(data, 512); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	got := make([]byte, len(data))
	if n, err := bh.ReadAt(got, 512); err != nil || n != len(got) || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d, %v, equal %v", n, err, bytes.Equal(got, data))
	}
	bh.Close()
	if err := h.WriteZeroes(bg, 512, 1024); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadAt(got[:1024], 512); err != nil || !bytes.Equal(got[:1024], make([]byte, 1024)) {
		t.Fatalf("after write-zeroes: %v", err)
	}
	if err := h.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if n, err := h.ReadAt(make([]byte, 1024), 4000*512-512); n != 512 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if _, err := c.Inject(bg, control.RangeReq{Name: "top", Sector: 100, Count: 1}); err != nil {
		t.Fatal(err)
	}
	n, err := h.ReadAt(make([]byte, 4096), 96*512)
	var ioe *stack.IOError
	if !errors.As(err, &ioe) || ioe.Device != "top" || ioe.Sector != 100 || !errors.Is(err, syscall.EIO) || n != 4*512 {
		t.Fatalf("read over poison: %d, %v", n, err)
	}
	if err := c.Remove(bg, control.RemoveReq{Name: "top"}); !errors.Is(err, stack.ErrBusy) {
		t.Fatalf("remove of a device open through the daemon: %v", err)
	}

	if err := c.Suspend(bg, control.SuspendReq{Name: "top"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := h.ReadAtContext(ctx, make([]byte, 512), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read of a suspended device with a context: %v", err)
	}
	if err := c.Resume(bg, control.SuspendReq{Name: "top"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("the handle after a cancelled read: %v", err)
	}
	h.Close()
	if info := info(t, c, "top"); info.Open != 0 {
		t.Fatalf("open count after close: %d", info.Open)
	}

	r, err := c.Open(bg, control.OpenReq{Name: "top"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.WriteAt(make([]byte, 512), 0); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write through a read handle: %v", err)
	}
}

func info(t *testing.T, c *service.Client, name string) control.DeviceInfo {
	t.Helper()
	in, err := c.Info(bg, control.NameReq{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestIOStreamRefusesOversizedFrames: a frame asking for more than MaxIO
// (read or write) ends its connection without the daemon allocating it,
// and the daemon goes on serving.
func TestIOStreamRefusesOversizedFrames(t *testing.T) {
	d := startDaemon(t, "", service.Config{})
	c := d.client(t)
	stackOf(t, d, c)
	for _, op := range []uint8{0, 1} {
		conn, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		p, _ := json.Marshal(control.OpenReq{Name: "top", Write: true})
		b, _ := json.Marshal(map[string]any{"id": 1, "method": "open", "params": json.RawMessage(p)})
		conn.Write(append(b, '\n'))
		line := make([]byte, 4096)
		if n, err := conn.Read(line); err != nil || !bytes.Contains(line[:n], []byte(`"size"`)) {
			t.Fatalf("open: %q, %v", line[:n], err)
		}
		var hdr [32]byte
		binary.BigEndian.PutUint32(hdr[0:], 0x44585251)
		hdr[4] = op
		binary.BigEndian.PutUint64(hdr[8:], 1)
		binary.BigEndian.PutUint32(hdr[24:], 1<<31) // 2 GiB
		conn.Write(hdr[:])
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		conn.Close()
	}
	if _, err := c.Version(bg); err != nil {
		t.Fatalf("the daemon after oversized frames: %v", err)
	}
	if info := info(t, c, "top"); info.Open != 0 {
		t.Fatalf("a refused stream left top open %d times", info.Open)
	}
}

// TestOneErrorText: a refusal reads the same through the daemon as from
// the engine in this process: the same text, the same sentinels.
func TestOneErrorText(t *testing.T) {
	d := startDaemon(t, "", service.Config{})
	c := d.client(t)
	stackOf(t, d, c)
	bad := "0 4095 striped 2 8 s0 0 s0 8"
	remote := c.Create(bg, control.CreateReq{Name: "bad1", Table: &bad})
	d.stop()
	local := (&control.Local{Config: control.Config{DB: d.db, SysfsRoot: d.dir + "/nosys"}}).Create(bg, control.CreateReq{Name: "bad1", Table: &bad})
	if remote == nil || local == nil || remote.Error() != local.Error() {
		t.Fatalf("daemon %q, engine %q", remote, local)
	}
	var te1, te2 *stack.TableError
	var oe1, oe2 *control.OpError
	if !errors.As(remote, &te1) || !errors.As(local, &te2) || te1.Text != te2.Text || !errors.As(remote, &oe1) || !errors.As(local, &oe2) || *oe1 != *oe2 && oe1.Op != oe2.Op {
		t.Fatalf("table errors differ: %v / %v", remote, local)
	}
	if !errors.Is(remote, syscall.EINVAL) || !errors.Is(remote, stack.ErrInvalid) {
		t.Fatalf("the daemon's refusal does not match its sentinels: %v", remote)
	}
}
