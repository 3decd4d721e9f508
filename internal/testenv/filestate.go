package testenv

import (
	"crypto/sha256"
	"os"
	"testing"
	"time"
)

// FileState is what must not change about a file that nothing wrote to:
// its bytes (a checksum), its size and its modification time. A refused
// command must leave the database exactly so.
type FileState struct {
	Sum   [sha256.Size]byte
	Size  int64
	MTime time.Time
}

// StateOf reads path's state; an error fails t.
func StateOf(t testing.TB, path string) FileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return FileState{Sum: sha256.Sum256(b), Size: fi.Size(), MTime: fi.ModTime()}
}

// SameState fails t if path no longer has state before; what names the
// action that must not have written, for the message.
func SameState(t testing.TB, path string, before FileState, what string) {
	t.Helper()
	after := StateOf(t, path)
	if after.Sum != before.Sum || after.Size != before.Size {
		t.Errorf("%s changed the file: sha256 %x (%d bytes) -> %x (%d bytes)", what, before.Sum, before.Size, after.Sum, after.Size)
	}
	if !after.MTime.Equal(before.MTime) {
		t.Errorf("%s wrote to the file: mtime %v -> %v", what, before.MTime, after.MTime)
	}
}
