package dax

import (
	"runtime"
	"testing"
)

// TestWriteBack: the write-back of any byte range (unaligned ends, one
// byte, none, many lines) runs to completion and leaves the bytes as they
// were; on amd64 an instruction is always found (CLFLUSH at least).
func TestWriteBack(t *testing.T) {
	if runtime.GOARCH == "amd64" && flushKind() == flushNone {
		t.Fatal("no flush instruction found on amd64")
	}
	if runtime.GOARCH != "amd64" {
		if err := writeBack(make([]byte, 64)); err == nil {
			t.Fatal("writeBack without an instruction succeeded")
		}
		return
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, c := range []struct{ off, n int }{{0, 0}, {0, 1}, {63, 2}, {1, 4096}, {100, 1<<20 - 100}, {0, 1 << 20}} {
		if err := writeBack(buf[c.off : c.off+c.n]); err != nil {
			t.Errorf("writeBack(%d+%d): %v", c.off, c.n, err)
		}
	}
	for i := range buf {
		if buf[i] != byte(i*7) {
			t.Fatalf("byte %d changed", i)
		}
	}
	t.Logf("flush instruction: %d (1 CLFLUSH, 2 CLFLUSHOPT, 3 CLWB)", flushKind())
}

// BenchmarkWriteBack64MiB writes back 64 MiB of just-written lines (the
// guest's device-dax namespace), against the baseline of writing them.
func BenchmarkWriteBack64MiB(b *testing.B) {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1 // fault every page in before either run
	}
	b.Run("write", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			for i := 0; i < len(buf); i += cacheLine {
				buf[i]++
			}
		}
	})
	b.Run("write+writeback", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			for i := 0; i < len(buf); i += cacheLine {
				buf[i]++
			}
			writeBack(buf)
		}
	})
}
