package delay

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// I/O through the pool's I/O path, as clients see it.

// ioEnv is a pool over the guest's ramdisks, with memory.
func ioEnv(t *testing.T, table string) (*transcript.Ramdisks, *stack.Pool, *stack.Device, *delay) {
	t.Helper()
	rd := transcript.NewRamdisks(false)
	p := rd.Pool()
	d := stacktest.MustCreate(t, p, "d", table)
	return rd, p, d, d.Active().Segments()[0].Target.(*delay)
}

// TestIOPlacement: through the I/O path, reads come from the read device,
// writes, write-zeroes and discards go to the write device, and a flush
// goes to the flush device only (the read device of a 6- or 9-argument
// table takes none), for tables of 3, 6 and 9 arguments.
func TestIOPlacement(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		table               string
		read, write, flush  int // ramdisk 0 or 1
		rstart, wstart      int64
		syncs0, syncs1      int // what a flush syncs
		discards0, discard1 int
	}{
		{"0 1000 delay /dev/ram0 100 0", 0, 0, 0, 100, 100, 1, 0, 1, 0},
		{"0 1000 delay /dev/ram0 100 0 /dev/ram1 200 0", 0, 1, 1, 100, 200, 0, 1, 0, 1},
		{"0 1000 delay /dev/ram0 100 0 /dev/ram1 200 0 /dev/ram0 300 0", 0, 1, 0, 100, 200, 1, 0, 0, 1},
		{"0 1000 delay /dev/ram1 100 0 /dev/ram1 200 0 /dev/ram0 300 0", 1, 1, 0, 100, 200, 1, 0, 0, 1},
	} {
		rd, _, d, _ := ioEnv(t, tc.table)
		ram := []*stacktest.MemLeaf{rd.Ram0, rd.Ram1}
		copy(ram[tc.read].Data()[(tc.rstart+5)*512:], transcript.Pattern(1000, 2))
		got := make([]byte, 1024)
		if _, err := d.ReadAt(got, 5*512); err != nil || !bytes.Equal(got, transcript.Pattern(1000, 2)) {
			t.Errorf("%s: read %v, %q", tc.table, err, got[:8])
		}
		if _, err := d.WriteAt(transcript.Pattern(2000, 2), 7*512); err != nil {
			t.Fatal(err)
		}
		if w := ram[tc.write].Data()[(tc.wstart+7)*512:][:1024]; !bytes.Equal(w, transcript.Pattern(2000, 2)) {
			t.Errorf("%s: the write is not on ram%d at %d", tc.table, tc.write, tc.wstart+7)
		}
		copy(ram[tc.write].Data()[(tc.wstart+20)*512:], transcript.Pattern(3000, 4))
		if _, err := d.Do(ctx, stack.Request{Op: stack.OpWriteZeroes, Off: 20 * 512, Len: 4 * 512}); err != nil {
			t.Fatal(err)
		}
		if z := ram[tc.write].Data()[(tc.wstart+20)*512:][:4*512]; !bytes.Equal(z, make([]byte, 4*512)) {
			t.Errorf("%s: write-zeroes not on ram%d", tc.table, tc.write)
		}
		if _, err := d.Do(ctx, stack.Request{Op: stack.OpDiscard, Off: 0, Len: 8 * 512}); err != nil {
			t.Fatal(err)
		}
		if rd.Ram0.Discards() != tc.discards0 || rd.Ram1.Discards() != tc.discard1 {
			t.Errorf("%s: discards reached ram0 %d and ram1 %d times", tc.table, rd.Ram0.Discards(), rd.Ram1.Discards())
		}
		if err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if rd.Ram0.Syncs() != tc.syncs0 || rd.Ram1.Syncs() != tc.syncs1 {
			t.Errorf("%s: the flush synced ram0 %d and ram1 %d times, want %d and %d", tc.table, rd.Ram0.Syncs(), rd.Ram1.Syncs(), tc.syncs0, tc.syncs1)
		}
	}
}

// TestIOHeld: a request waits its class's delay; while it waits the status
// counts it in its class; a suspend lets every held request go at once
// (delay_presuspend flushes them) and none waits until the resume; a
// removal does the same.
func TestIOHeld(t *testing.T) {
	ctx := context.Background()
	rd, p, d, tg := ioEnv(t, "0 1000 delay /dev/ram0 0 20 /dev/ram1 0 60000 /dev/ram1 0 60000")

	start := time.Now()
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("a read with a 20 ms delay took %v", waited)
	}

	// A write and a flush, held for a minute: counted, then let go by the
	// suspend, the write landing.
	done := make(chan error, 2)
	go func() {
		_, err := d.WriteAt(transcript.Pattern(9, 1), 9*512)
		done <- err
	}()
	go func() { done <- d.Flush(ctx) }()
	waitStatus(t, tg, "0 1 1")
	if err := p.Suspend(d); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the suspend did not let the held requests go")
		}
	}
	if s := tg.Status(); s != "0 0 0" {
		t.Errorf("status %q after the suspend", s)
	}
	if !bytes.Equal(rd.Ram1.Data()[9*512:10*512], transcript.Pattern(9, 1)) {
		t.Error("the write let go by the suspend did not land")
	}
	if rd.Ram1.Syncs() != 1 || rd.Ram0.Syncs() != 0 {
		t.Errorf("the flush synced ram0 %d, ram1 %d times", rd.Ram0.Syncs(), rd.Ram1.Syncs())
	}
	if err := p.Resume(d); err != nil {
		t.Fatal(err)
	}

	// Held again after the resume; a removal lets it go.
	go func() {
		_, err := d.WriteAt(transcript.Pattern(10, 1), 10*512)
		done <- err
	}()
	waitStatus(t, tg, "0 1 0")
	if err := p.Remove(d); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, stack.ErrRemoved) {
			t.Fatalf("the write held at the removal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the removal did not let the held write go")
	}
}

// TestIOGivesUp: a held request ends with its client's context (its
// error, not EIO), counted out.
func TestIOGivesUp(t *testing.T) {
	_, _, d, tg := ioEnv(t, "0 1000 delay /dev/ram0 0 60000")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.Do(ctx, stack.Request{Op: stack.OpRead, Len: 512, Data: make([]byte, 512)})
		done <- err
	}()
	waitStatus(t, tg, "1 0 0")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, syscall.EIO) {
		t.Fatalf("the read given up: %v", err)
	}
	if s := tg.Status(); s != "0 0 0" {
		t.Errorf("status %q after the read gave up", s)
	}
}

func waitStatus(t *testing.T, tg *delay, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if tg.Status() == want {
			return
		}
	}
	t.Fatalf("status %q, want %q", tg.Status(), want)
}
