package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Real NBD clients on a device exported by the daemon: nbdinfo, qemu-io,
// nbdcopy, qemu-img and fio's nbd engine. The device is a file leaf
// followed by a zero segment (a hole for base:allocation).
func TestExportsNBD(t *testing.T) {
	s := newExportSandbox(t, "nbdinfo", "nbdcopy", "qemu-io", "qemu-img", "fio")
	leaf := s.file("n.img", 65536*512)
	s.start()
	s.run("create", "n", "--table", fmt.Sprintf("0 65536 linear %s 0\n65536 8192 zero", leaf))
	const size = (65536 + 8192) * 512
	uri := s.uri("n")

	t.Run("info", func(t *testing.T) {
		var info struct {
			Exports []struct {
				Name     string   `json:"export-name"`
				Size     int64    `json:"export-size"`
				Contexts []string `json:"contexts"`
				ReadOnly bool     `json:"is_read_only"`
				Flush    bool     `json:"can_flush"`
				FUA      bool     `json:"can_fua"`
				Zero     bool     `json:"can_zero"`
			} `json:"exports"`
		}
		if err := json.Unmarshal([]byte(sh(t, "nbdinfo", "--json", uri)), &info); err != nil || len(info.Exports) != 1 {
			t.Fatalf("nbdinfo --json: %v %+v", err, info)
		}
		e := info.Exports[0]
		if e.Name != "n" || e.Size != size || e.ReadOnly || !e.Flush || !e.FUA || !e.Zero {
			t.Errorf("nbdinfo: %+v", e)
		}
		if strings.Join(e.Contexts, ",") != "base:allocation,daxstack:badblocks" {
			t.Errorf("contexts %v", e.Contexts)
		}
		got := mapLines(sh(t, "nbdinfo", "--map=base:allocation", uri))
		want := []mapLine{{0, 65536 * 512, 0}, {65536 * 512, 8192 * 512, 3}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("base:allocation map %v, want %v", got, want)
		}
	})

	t.Run("qemu-io", func(t *testing.T) {
		out := sh(t, "qemu-io", "-f", "raw", uri, "-c", "write -P 0xab 4096 1M", "-c", "read -P 0xab 4096 1M", "-c", "read -P 0 0 4096")
		if strings.Count(out, "bytes at offset") != 3 {
			t.Errorf("qemu-io:\n%s", out)
		}
		b := s.run("read", "n", "--sector", "8", "--count", "2048")
		if !bytes.Equal([]byte(b), bytes.Repeat([]byte{0xab}, 1<<20)) {
			t.Errorf("daxstack read does not see qemu-io's write")
		}
	})

	t.Run("badblocks", func(t *testing.T) {
		s.run("error-range", "n", "100", "8")
		s.run("error-range", "n", "4000", "16")
		defer s.run("good-range", "n", "4000", "16")
		defer s.run("good-range", "n", "100", "8")
		var want []mapLine
		for _, line := range strings.Split(strings.TrimSpace(s.run("badblocks", "n")), "\n") {
			f := strings.Fields(line)
			a, _ := strconv.ParseInt(f[0], 10, 64)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			want = append(want, mapLine{a * 512, n * 512, 1})
		}
		var got []mapLine
		for _, l := range mapLines(sh(t, "nbdinfo", "--map=daxstack:badblocks", uri)) {
			if l.typ != 0 {
				got = append(got, l)
			}
		}
		if len(want) != 2 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("daxstack:badblocks map %v, badblocks %v", got, want)
		}
		// One connection: the read over the bad range fails, the next
		// request succeeds.
		out, err := exec.Command("qemu-io", "-f", "raw", uri, "-c", "read 51200 4096", "-c", "read 0 4096").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Input/output error") || !strings.Contains(string(out), "read 4096/4096 bytes at offset 0") {
			t.Errorf("qemu-io over a bad range: %v\n%s", err, out)
		}
	})

	t.Run("copy", func(t *testing.T) {
		img := s.path("in.img")
		data := make([]byte, size)
		rand.Read(data[:65536*512])
		os.WriteFile(img, data, 0o644)
		sh(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img, uri)
		sh(t, "nbdcopy", uri, s.path("copy.img"))
		c, _ := os.ReadFile(s.path("copy.img"))
		r := s.run("read", "n", "--sector", "0", "--count", strconv.Itoa(size/512))
		if !bytes.Equal(c, []byte(r)) || !bytes.Equal(c, data) {
			t.Errorf("nbdcopy of the device differs from daxstack read or from what qemu-img wrote")
		}
		sh(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, s.path("conv.img"))
		v, _ := os.ReadFile(s.path("conv.img"))
		if !bytes.Equal(v, data) {
			t.Errorf("qemu-img convert from the device differs")
		}
	})

	t.Run("fio", func(t *testing.T) {
		out := sh(t, "fio", "--name=v", "--ioengine=nbd", "--uri="+uri, "--rw=randwrite", "--bs=4k",
			"--size=16M", "--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0", "--output-format=json")
		var rep struct {
			Jobs []struct {
				Error int `json:"error"`
				Write struct {
					IOBytes int64 `json:"io_bytes"`
				} `json:"write"`
				Read struct {
					IOBytes int64 `json:"io_bytes"`
				} `json:"read"`
			} `json:"jobs"`
		}
		if i := strings.Index(out, "{"); i >= 0 {
			out = out[i:]
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Jobs) != 1 {
			t.Fatalf("fio: %v\n%s", err, out)
		}
		j := rep.Jobs[0]
		if j.Error != 0 || j.Write.IOBytes != 16<<20 || j.Read.IOBytes != 16<<20 {
			t.Errorf("fio verify: error %d, wrote %d, verified %d", j.Error, j.Write.IOBytes, j.Read.IOBytes)
		}
	})

	t.Run("busy", func(t *testing.T) {
		// An NBD connection is a user: remove refuses, --deferred waits
		// for it to go.
		q := exec.Command("qemu-io", "-f", "raw", uri)
		stdin, _ := q.StdinPipe()
		stdout, _ := q.StdoutPipe()
		q.Stderr = os.Stderr
		if err := q.Start(); err != nil {
			t.Fatal(err)
		}
		defer q.Process.Kill()
		fmt.Fprintln(stdin, "read 0 512")
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && !strings.Contains(sc.Text(), "bytes at offset") {
		}
		go io.Copy(io.Discard, stdout)
		_, stderr, err := s.tryRun("remove", "n")
		if err == nil {
			t.Fatal("remove succeeded with an NBD connection open")
		}
		if !strings.Contains(stderr, "NBD connection") {
			t.Errorf("remove with an NBD connection open: %s", stderr)
		}
		s.run("remove", "--deferred", "n")
		if !strings.Contains(s.run("ls"), "n\t") {
			t.Fatal("deferred remove removed a device in use")
		}
		fmt.Fprintln(stdin, "quit")
		stdin.Close()
		q.Wait()
		waitFor(t, 5e9, "the deferred removal", func() bool { return strings.Contains(s.run("ls"), "No devices found") })
	})
}

type mapLine struct {
	off, n int64
	typ    int
}

// mapLines parses nbdinfo --map: offset, length, type (and a
// description).
func mapLines(out string) []mapLine {
	var ls []mapLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, _ := strconv.ParseInt(f[0], 10, 64)
		n, _ := strconv.ParseInt(f[1], 10, 64)
		ty, _ := strconv.Atoi(f[2])
		ls = append(ls, mapLine{a, n, ty})
	}
	return ls
}
