package dax_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
)

// TestAccess: each leaf says truthfully how it is used. Nothing here is
// DAX (no pmem on the test machine): files on disk and tmpfs and loop
// devices are page-cache, Opener.Pread is pread, a lost leaf none. The
// DAX cases are the classification tests in access_internal_test.go and
// the guest VM's tests on real pmem.
func TestAccess(t *testing.T) {
	dirs := map[string]string{"disk": t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "daxstack-access-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	for name, dir := range dirs {
		for _, pread := range []bool{false, true} {
			o := dax.Opener{Pread: pread}
			l, err := o.Open(tempFile(t, dir, 64<<10, 'a'))
			if err != nil {
				t.Fatal(err)
			}
			want := dax.AccessPageCache
			if pread {
				want = dax.AccessPread
			}
			got, err := l.Access()
			if got != want || err != nil || !l.AccessVerified() {
				t.Errorf("%s pread=%v: Access %s, %v, verified %v; want %s, verified", name, pread, got, err, l.AccessVerified(), want)
			}
			if dax.MappedSync(l) {
				t.Errorf("%s: mapped with MAP_SYNC", name)
			}
			l.Close()
			if got, err := l.Access(); got != dax.AccessNone || !errors.Is(err, dax.ErrClosed) {
				t.Errorf("%s: closed leaf: %s, %v", name, got, err)
			}
		}
	}
	lost := dax.Missing("file:1:2", "/nope", "/nope", dax.KindFile, 8)
	if got, err := lost.Access(); got != dax.AccessNone || !errors.Is(err, dax.ErrLost) {
		t.Errorf("lost leaf: %s, %v", got, err)
	}
}

func TestAccessLoop(t *testing.T) {
	testenv.NeedRoot(t)
	file, _ := patternFile(t, t.TempDir(), 64)
	node := dax.NewLoop(t, file)
	var o dax.Opener
	l, err := o.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, err := l.Access(); got != dax.AccessPageCache || err != nil || !l.AccessVerified() {
		t.Errorf("loop device: %s, %v, verified %v; want page-cache", got, err, l.AccessVerified())
	}
}

// TestReport: what a report of leaves shows, and its JSON.
func TestReport(t *testing.T) {
	l := openFile(t, 64<<10, 'r', nil)
	if err := l.Inject(extent.Of(extent.Extent{Start: 8, Len: 3})); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(l.Path(), 32<<10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Recheck(); err != nil {
		t.Fatal(err)
	}
	r := l.Report()
	want := dax.Report{
		Path: l.Path(), Ref: l.Ref(), Name: l.Name(), ID: l.ID(), Kind: dax.KindFile, Identity: l.Identity(),
		Size: 128, CurrentSize: 64, Access: dax.AccessPageCache, AccessVerified: true,
		Poison: 3, PoisonSource: dax.SourceEmulated, Truncated: 64,
	}
	if r != want {
		t.Errorf("Report\n got %+v\nwant %+v", r, want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"path", "kind", "identity", "size", "current_size", "access", "lost", "poison", "claimed"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON %s has no %q", b, k)
		}
	}
	m := dax.Missing("blk:259:3", "259:3", "pmem3", dax.KindPmem, 4096)
	if r := m.Report(); !r.Lost || r.Access != dax.AccessNone || r.Error == "" || r.Size != 4096 {
		t.Errorf("report of a missing leaf: %+v", r)
	}
}
