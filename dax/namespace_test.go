package dax

import (
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The sysfs of a region with a raw namespace (namespace1.0), and an fsdax
// one (namespace1.1) whose block device hangs off its pfn device pfn1.0,
// with a UUID of its own; and a devdax one (namespace1.2) under nd dax
// device dax1.0. (Shapes as ndctl create-namespace leaves them.)
const region = "devices/platform/e820_pmem/ndbus0/region1"

var nsTree = map[string]string{
	region + "/namespace1.0/uuid": "11111111-0000-4000-8000-000000000000",
	region + "/namespace1.1/uuid": "22222222-0000-4000-8000-000000000000",
	region + "/pfn1.0/uuid":       "ffffffff-0000-4000-8000-00000000000f",
	region + "/pfn1.0/namespace":  "namespace1.1",
	region + "/pfn1.1/uuid":       "eeeeeeee-0000-4000-8000-00000000000e",
	region + "/pfn1.1/namespace":  "",
	region + "/namespace1.2/uuid": "33333333-0000-4000-8000-000000000000",
	region + "/dax1.0/uuid":       "dddddddd-0000-4000-8000-00000000000d",
	region + "/dax1.0/namespace":  "namespace1.2",
	region + "/pfn1.2/uuid":       "cccccccc-0000-4000-8000-00000000000c",
	region + "/pfn1.2/namespace":  "../namespace1.0",
	"block/pmem1/device":          "->../../" + region + "/namespace1.0",
	"block/pmem2/device":          "->../../" + region + "/pfn1.0",
}

func TestNamespaceUUID(t *testing.T) {
	sys := t.TempDir()
	WriteTree(t, sys, nsTree)
	for _, c := range []struct{ name, dir, want string }{
		{"raw: the namespace itself", "block/pmem1/device", "11111111-0000-4000-8000-000000000000"},
		{"fsdax: the pfn's namespace, not the pfn", "block/pmem2/device", "22222222-0000-4000-8000-000000000000"},
		{"devdax: the nd dax device's namespace", region + "/dax1.0", "33333333-0000-4000-8000-000000000000"},
		{"a pfn with no namespace", region + "/pfn1.1", ""},
		{"a namespace attribute that is a path", region + "/pfn1.2", ""},
		{"no sysfs", "block/nothing/device", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := namespaceUUID(filepath.Join(sys, c.dir)); got != c.want {
				t.Errorf("namespaceUUID = %q, want %q", got, c.want)
			}
		})
	}
}

// TestFsdaxIdentity opens a fake fsdax pmem (a loop device behind a sysfs
// tree that calls it pmem2, over pfn1.0): its identity carries the
// namespace's UUID, so a namespace re-created with the same --uuid (and so
// a new pfn UUID) is the same leaf.
func TestFsdaxIdentity(t *testing.T) {
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	file := filepath.Join(dir, "backing.img")
	WriteTree(t, dir, map[string]string{"backing.img": string(make([]byte, 1<<20))})
	node := NewLoop(t, file)
	ma, mi := Devno(t, node)
	devno := fmt.Sprintf("%d:%d", ma, mi)
	tree := map[string]string{
		"dev/block/" + devno + "/uevent": fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=pmem2\nDEVTYPE=disk\n", ma, mi),
		"dev/block/" + devno + "/size":   "2048",
	}
	for k, v := range nsTree {
		tree[k] = v
	}
	WriteTree(t, sys, tree)
	WriteTree(t, dev, map[string]string{".keep": ""})
	Mknod(t, filepath.Join(dev, "pmem2"), unix.S_IFBLK, ma, mi)
	l, err := (&Opener{SysfsRoot: sys, DevRoot: dev}).Open(filepath.Join(dev, "pmem2"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Identity(); got.Kind != KindPmem || got.UUID != "22222222-0000-4000-8000-000000000000" {
		t.Errorf("identity %+v: want pmem with the namespace's uuid 22222222-...", got)
	}
	recreated := l.Identity()
	recreated.Minor, recreated.DiskSeq = mi+1, 99 // another number, a new medium: the same namespace
	if !l.Identity().Same(recreated) {
		t.Errorf("%v and %v: the same namespace must be the same leaf", l.Identity(), recreated)
	}
}
