package dax

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestFindPmemByUUID: a pmem namespace is found by its UUID, whatever its
// number (a fake sysfs naming a loop device pmem7, as pmem_test.go does).
func TestFindPmemByUUID(t *testing.T) {
	f := newFakePmem(t, 64, "")
	o := &Opener{SysfsRoot: f.sys, DevRoot: f.dev}
	node, err := o.Find(Identity{Kind: KindPmem, Major: 259, Minor: 99, UUID: "c0ffee00-0000-4000-8000-000000000007"})
	if err != nil || node != filepath.Join(f.dev, "pmem7") {
		t.Fatalf("Find: %s, %v", node, err)
	}
	if _, err := o.Find(Identity{Kind: KindPmem, UUID: "another"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Find of another UUID: %v", err)
	}
}
