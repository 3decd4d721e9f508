package dax_test

// A loop leaf re-attached at another number (#10 item 6).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/testenv"
)

// TestFindReattachedLoop detaches the loop device of a file and attaches
// the file again until it gets another number (other loops, ours or
// other tests', hold the old one): Find returns the new node, and the
// leaf opened there is the same leaf under a new ID.
func TestFindReattachedLoop(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	file, _ := patternFile(t, dir, 256)
	first := dax.NewLoop(t, file)
	var o dax.Opener
	l, err := o.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	id, oldID := l.Identity(), l.ID()
	l.Close()
	if node, err := o.Find(id); err != nil || node != first {
		t.Fatalf("Find before the detach: %s, %v; want %s", node, err, first)
	}
	dax.DetachLoop(t, first)
	if _, err := o.Find(id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Find with the file detached: %v; want ErrNotExist", err)
	}
	again := ""
	for i := range 8 {
		n := dax.NewLoop(t, file)
		if n != first {
			again = n
			break
		}
		// Same number again: detach it and hold that number with
		// another file, so the next attach goes elsewhere.
		dax.DetachLoop(t, n)
		filler := filepath.Join(dir, fmt.Sprintf("filler%d.img", i))
		if err := os.WriteFile(filler, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
		dax.NewLoop(t, filler)
	}
	if again == "" {
		t.Fatal("the file never got another loop number")
	}
	node, err := o.Find(id)
	if err != nil || node != again {
		t.Fatalf("Find after re-attaching as %s: %s, %v", again, node, err)
	}
	back, err := o.OpenKnown(node, dax.Known{Identity: id, Size: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if back.ID() == oldID || !id.Same(back.Identity()) {
		t.Errorf("re-attached leaf: ID %s (was %s), identity %+v", back.ID(), oldID, back.Identity())
	}
	t.Logf("%s (%s) came back as %s (%s)", first, oldID, again, back.ID())

	// Another file at the same offset is not the leaf, nor is the same
	// file at another offset.
	other, _ := patternFile(t, t.TempDir(), 256)
	dax.NewLoop(t, other)
	dax.NewLoop(t, file, "-o", "4096")
	if n, err := o.Find(id); err != nil || n != again {
		t.Errorf("Find with look-alikes attached: %s, %v; want %s", n, err, again)
	}
	dax.DetachLoop(t, again)
	if n, err := o.Find(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Find with only look-alikes: %s, %v; want ErrNotExist", n, err)
	}
}

// TestFindRefusesOthers: files and device-dax are found by path, not
// looked for.
func TestFindRefusesOthers(t *testing.T) {
	var o dax.Opener
	if _, err := o.Find(dax.Identity{Kind: dax.KindFile, Dev: 1, Ino: 2}); !errors.Is(err, dax.ErrUnsupported) {
		t.Errorf("Find of a file identity: %v", err)
	}
}
