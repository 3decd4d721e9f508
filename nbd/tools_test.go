package nbd_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// The server against real clients: libnbd's nbdinfo, nbdcopy and nbdsh,
// qemu's qemu-io and qemu-img, fio's nbd engine.

type nbdinfoJSON struct {
	Protocol   string `json:"protocol"`
	TLS        bool   `json:"TLS"`
	Structured bool   `json:"structured"`
	Exports    []struct {
		Name        string   `json:"export-name"`
		Description string   `json:"description"`
		Size        int64    `json:"export-size"`
		Contexts    []string `json:"contexts"`
		ReadOnly    bool     `json:"is_read_only"`
		CanCache    bool     `json:"can_cache"`
		CanDF       bool     `json:"can_df"`
		CanFastZero bool     `json:"can_fast_zero"`
		CanFlush    bool     `json:"can_flush"`
		CanFUA      bool     `json:"can_fua"`
		CanMulti    bool     `json:"can_multi_conn"`
		CanTrim     bool     `json:"can_trim"`
		CanZero     bool     `json:"can_zero"`
		MinBlock    uint32   `json:"block_size_minimum"`
		PrefBlock   uint32   `json:"block_size_preferred"`
		MaxBlock    uint32   `json:"block_size_maximum"`
	} `json:"exports"`
}

func nbdinfo(t *testing.T, args ...string) nbdinfoJSON {
	t.Helper()
	out := run(t, "nbdinfo", append([]string{"--json"}, args...)...)
	var info nbdinfoJSON
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("nbdinfo output: %v\n%s", err, out)
	}
	return info
}

func TestNbdinfo(t *testing.T) {
	dir := &nbdtest.Dir{}
	dir.Add("mem", nbdtest.NewMem(3<<20), nbdtest.Options{Description: "a test device"})
	none := nbd.Features(0)
	dir.Add("ro", nbdtest.NewMem(1<<20), nbdtest.Options{ReadOnly: true, Features: &none, MetaContexts: []string{},
		BlockSizes: nbd.BlockSizes{Minimum: 512, Preferred: 4096, MaxPayload: 1 << 20}})
	sock := serve(t, &nbd.Server{Exports: dir})

	info := nbdinfo(t, unixURI(sock, "mem"))
	if info.Protocol != "newstyle-fixed" || !info.Structured || info.TLS || len(info.Exports) != 1 {
		t.Fatalf("handshake %+v", info)
	}
	e := info.Exports[0]
	if e.Name != "mem" || e.Description != "a test device" || e.Size != 3<<20 || e.ReadOnly ||
		!e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero || !e.CanFastZero || !e.CanDF || !e.CanMulti || e.CanCache ||
		e.MinBlock != 1 || e.PrefBlock != 4096 || e.MaxBlock != nbd.DefaultMaxPayload {
		t.Errorf("export %+v", e)
	}
	if fmt.Sprint(e.Contexts) != "[base:allocation daxstack:badblocks]" {
		t.Errorf("contexts %v", e.Contexts)
	}

	ro := nbdinfo(t, unixURI(sock, "ro")).Exports[0]
	if !ro.ReadOnly || ro.CanFlush || ro.CanFUA || ro.CanTrim || ro.CanZero || ro.CanFastZero || ro.CanMulti ||
		ro.MinBlock != 512 || ro.MaxBlock != 1<<20 || fmt.Sprint(ro.Contexts) != "[base:allocation]" {
		t.Errorf("read-only export %+v", ro)
	}

	list := nbdinfo(t, "--list", unixURI(sock, ""))
	var names []string
	for _, e := range list.Exports {
		names = append(names, e.Name+"="+e.Description)
	}
	if fmt.Sprint(names) != "[mem=a test device ro=]" {
		t.Errorf("--list: %v", names)
	}

	if out, err := runErr(t, "nbdinfo", unixURI(sock, "nosuch")); err == nil {
		t.Errorf("nbdinfo of a missing export succeeded:\n%s", out)
	}
}

// mapOf runs nbdinfo --map=ctx and returns its lines as offset length flags.
func mapOf(t *testing.T, uri, ctx string) [][3]int64 {
	t.Helper()
	out := run(t, "nbdinfo", "--map="+ctx, uri)
	var got [][3]int64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("map line %q", line)
		}
		var v [3]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i], 10, 64)
		}
		got = append(got, v)
	}
	return got
}

func TestNbdinfoMap(t *testing.T) {
	srv, _, m := memServer(t, 1<<20, nbdtest.Options{})
	m.Bad.Add(4096, 512)
	m.Bad.Add(65536+7, 100000)
	sock := serve(t, srv)
	uri := unixURI(sock, "mem")
	run(t, "nbdsh", "-u", uri, "-c", "h.pwrite(b'x' * 8192, 16384)")

	if got, want := mapOf(t, uri, nbd.BaseAllocation), [][3]int64{{0, 16384, 3}, {16384, 8192, 0}, {24576, 1<<20 - 24576, 3}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("base:allocation\n got %v\nwant %v", got, want)
	}
	want := [][3]int64{{0, 4096, 0}, {4096, 512, 1}, {4608, 65536 + 7 - 4608, 0}, {65536 + 7, 100000, 1}, {65536 + 7 + 100000, 1<<20 - 65536 - 7 - 100000, 0}}
	if got := mapOf(t, uri, nbdtest.BadContext); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s\n got %v\nwant %v", nbdtest.BadContext, got, want)
	}
	if out, err := runErr(t, "nbdinfo", "--map=daxstack:nosuch", uri); err == nil {
		t.Errorf("a context the server lacks was mapped:\n%s", out)
	}
}

func TestQemuIO(t *testing.T) {
	srv, _, m := memServer(t, 4<<20, nbdtest.Options{})
	sock := serve(t, srv)
	uri := unixURI(sock, "mem")
	out := run(t, "qemu-io", "-f", "raw", uri,
		"-c", "write -P 0xab 0 64k",
		"-c", "write -P 0xcd 1M 1M",
		"-c", "write -z 64k 64k",
		"-c", "read -P 0xab 0 64k",
		"-c", "read -P 0 64k 64k",
		"-c", "read -P 0xcd 1M 1M",
		"-c", "flush")
	if strings.Contains(out, "failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	b := m.Bytes()
	if !bytes.Equal(b[:65536], bytes.Repeat([]byte{0xab}, 65536)) || !bytes.Equal(b[1<<20:2<<20], bytes.Repeat([]byte{0xcd}, 1<<20)) {
		t.Error("the device does not hold what qemu-io wrote")
	}
	// A pattern that is not there is seen as such (the check can fail).
	if out, _ := runErr(t, "qemu-io", "-f", "raw", uri, "-c", "read -P 0x11 0 4k"); !strings.Contains(out, "Pattern verification failed") {
		t.Errorf("a wrong pattern was not noticed:\n%s", out)
	}
}

// TestBadRangeSameConnection: a read over a bad range fails with EIO (and
// its error offset) and the next request on the same connection succeeds.
func TestBadRangeSameConnection(t *testing.T) {
	srv, _, m := memServer(t, 1<<20, nbdtest.Options{})
	m.Bad.Add(10000, 1)
	sock := serve(t, srv)
	uri := unixURI(sock, "mem")

	out, _ := runErr(t, "qemu-io", "-f", "raw", uri, "-c", "read 8k 4k", "-c", "read 12k 4k", "-c", "read 0 8k")
	if n := strings.Count(out, "read failed: Input/output error"); n != 1 || strings.Count(out, "read 4096/4096 bytes") != 1 ||
		!strings.Contains(out, "read 8192/8192 bytes") {
		t.Errorf("qemu-io: want one EIO then two good reads:\n%s", out)
	}

	script := `
import errno
try:
    h.pread(4096, 8192)
    print("no error")
except nbd.Error as e:
    print("error", e.errnum == errno.EIO)
seen = []
def chunk(buf, offset, status, err):
    seen.append((offset, len(buf), status))
    return 0
try:
    h.pread_structured(8192, 8192, chunk)
except nbd.Error as e:
    print("structured error", e.errnum == errno.EIO)
print("chunks", seen)
print("next", len(h.pread(4096, 0)))
`
	out = run(t, "nbdsh", "-u", uri, "-c", script)
	want := "error True\nstructured error True\nchunks [(8192, 1808, 1), (10000, 0, 3)]\nnext 4096\n"
	if out != want {
		t.Errorf("nbdsh:\n%s\nwant\n%s", out, want)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	srv, _, m := memServer(t, 1<<20, nbdtest.Options{ReadOnly: true})
	sock := serve(t, srv)
	uri := unixURI(sock, "mem")
	script := `
import errno
h.set_strict_mode(0)
h.connect_uri(URI)
print("ro", h.is_read_only())
for name, op in [("write", lambda: h.pwrite(b"x" * 512, 0)), ("zero", lambda: h.zero(512, 0)), ("trim", lambda: h.trim(512, 0))]:
    try:
        op()
        print(name, "succeeded")
    except nbd.Error as e:
        print(name, errno.errorcode.get(e.errnum))
print("read", len(h.pread(512, 0)))
`
	out := run(t, "nbdsh", "-c", strings.Replace(script, "URI", strconv.Quote(uri), 1))
	if want := "ro True\nwrite EPERM\nzero EPERM\ntrim EPERM\nread 512\n"; out != want {
		t.Errorf("nbdsh:\n%s\nwant\n%s", out, want)
	}
	if !bytes.Equal(m.Bytes(), make([]byte, 1<<20)) {
		t.Error("a refused write changed the device")
	}
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	// Leave holes so that sparse copies are exercised.
	clear(b[size/4 : size/2])
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func fileServer(t *testing.T, size int) (sock string, f *nbdtest.File, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(size)); err != nil {
		t.Fatal(err)
	}
	f, err := nbdtest.OpenFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dir := &nbdtest.Dir{}
	dir.Add("disk", f, nbdtest.Options{})
	return serve(t, &nbd.Server{Exports: dir}), f, path
}

func TestNbdcopy(t *testing.T) {
	const size = 24 << 20
	sock, _, disk := fileServer(t, size)
	uri := unixURI(sock, "disk")
	tmp := t.TempDir()
	src := randomFile(t, filepath.Join(tmp, "src"), size)
	run(t, "nbdcopy", filepath.Join(tmp, "src"), uri)
	if got, _ := os.ReadFile(disk); !bytes.Equal(got, src) {
		t.Fatal("nbdcopy to the export: the export differs from the source")
	}
	if err := os.WriteFile(filepath.Join(tmp, "dst"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "nbdcopy", uri, filepath.Join(tmp, "dst"))
	if got, _ := os.ReadFile(filepath.Join(tmp, "dst")); !bytes.Equal(got, src) {
		t.Fatal("nbdcopy from the export: the copy differs")
	}
}

func TestQemuImgConvert(t *testing.T) {
	const size = 16 << 20
	sock, _, disk := fileServer(t, size)
	uri := unixURI(sock, "disk")
	tmp := t.TempDir()
	src := randomFile(t, filepath.Join(tmp, "src"), size)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", filepath.Join(tmp, "src"), uri)
	if got, _ := os.ReadFile(disk); !bytes.Equal(got, src) {
		t.Fatal("qemu-img convert to the export: it differs from the source")
	}
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, filepath.Join(tmp, "dst"))
	if got, _ := os.ReadFile(filepath.Join(tmp, "dst")); !bytes.Equal(got, src) {
		t.Fatal("qemu-img convert from the export: the copy differs")
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(tmp, "src"), uri)
}

func TestFioVerify(t *testing.T) {
	sock, _, _ := fileServer(t, 16<<20)
	uri := unixURI(sock, "disk")
	out := run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+uri,
		"--rw=randwrite", "--bs=4k", "--size=4m", "--numjobs=4", "--offset_increment=4m",
		"--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
		"--output-format=terse")
	// Terse output: the 5th field is the error code of each job.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	jobs := 0
	for _, l := range lines {
		f := strings.Split(l, ";")
		if len(f) < 5 || !strings.HasPrefix(f[0], "3") {
			continue
		}
		jobs++
		if f[4] != "0" {
			t.Errorf("fio job failed: %s", l)
		}
	}
	if jobs != 4 {
		t.Errorf("fio ran %d jobs, want 4:\n%s", jobs, out)
	}
}
