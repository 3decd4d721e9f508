package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/export/blockdev"
	"github.com/daxstack/daxstack/export/serve"
	"github.com/daxstack/daxstack/service"
)

// quickstartDaemon is `quickstart --daemon`: a daemon in this process,
// with its exports in dir (device files, loop devices, links, NBD), an
// ext4 filesystem on a stack of file-backed leaves, and a failure range
// under one file's blocks that the file's reader sees as EIO.
func quickstartDaemon(c *cli.Context, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("quickstart --daemon needs root: it makes loop devices and mounts a filesystem (the plain quickstart does not)")
	}
	w := c.App.Writer
	db, sock := filepath.Join(dir, "daxstack.db"), filepath.Join(dir, "daxstack.sock")
	links, mnt := filepath.Join(dir, "links"), filepath.Join(dir, "mnt")
	srv, err := service.New(service.Config{
		Engine: control.Config{DB: db}, Socket: sock, Logf: func(string, ...any) {},
		Exports: &serve.Options{
			Mount: filepath.Join(dir, "dev"), Links: links, MapperLinks: blockdev.MapperOff,
			NBDSocket: filepath.Join(dir, "nbd.sock"),
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	for deadline := time.Now().Add(10 * time.Second); srv.Exports() == nil; {
		select {
		case err := <-served:
			served <- err
			return fmt.Errorf("daemon: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("daemon did not start")
		}
	}
	leaf := func(i int) string { return filepath.Join(dir, fmt.Sprintf("leaf%d.img", i)) }
	for i := range 3 {
		if err := os.WriteFile(leaf(i), nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(leaf(i), 64<<20); err != nil {
			return err
		}
	}
	show := func(args []string) string {
		s := strings.Join(args, " ")
		s = strings.ReplaceAll(s, dir+"/", "")
		return strings.ReplaceAll(s, "\n", "\\n")
	}
	dx := func(comment string, args ...string) string {
		if comment != "" {
			fmt.Fprintf(w, "\n# %s\n", comment)
		}
		fmt.Fprintf(w, "$ daxstack %s\n", show(args))
		var out, errb bytes.Buffer
		code := run(c.Context, append([]string{"daxstack", "--db", db, "--socket", sock}, args...), strings.NewReader(""), &out, &errb)
		io.Copy(w, bytes.NewReader(out.Bytes()))
		io.Copy(w, &errb)
		if code != 0 {
			fmt.Fprintf(w, "(exit status %d)\n", code)
		}
		return out.String()
	}
	shell := func(comment, name string, args ...string) (string, error) {
		if comment != "" {
			fmt.Fprintf(w, "\n# %s\n", comment)
		}
		fmt.Fprintf(w, "$ %s %s\n", name, show(args))
		out, err := exec.CommandContext(c.Context, name, args...).CombinedOutput()
		w.Write([]byte(strings.ReplaceAll(string(out), dir+"/", "")))
		if err != nil {
			fmt.Fprintf(w, "(%v)\n", err)
		}
		return string(out), err
	}
	dx("a stripe of two file-backed leaves, and top: linear over it plus a third leaf",
		"create", "s0", "--table", fmt.Sprintf("0 262144 striped 2 8 %s 0 %s 0", leaf(0), leaf(1)))
	dx("", "create", "top", "--table", fmt.Sprintf("0 131072 linear s0 0\n131072 65536 linear %s 0", leaf(2)))
	dx("while the daemon runs, each device is a block device (and an NBD export)", "info", "-c", "-o", "name,size,blkdev")
	dev := filepath.Join(links, "top")
	if _, err := shell("a real filesystem on it", "mkfs.ext4", "-q", "-F", dev); err != nil {
		return err
	}
	os.MkdirAll(mnt, 0o755)
	if _, err := shell("", "mount", dev, mnt); err != nil {
		return err
	}
	defer exec.Command("umount", mnt).Run()
	file := filepath.Join(mnt, "hello.txt")
	os.WriteFile(file, []byte(strings.Repeat("hello from a daxstack filesystem\n", 256)), 0o644)
	exec.Command("sync").Run()
	out, err := shell("where the file lives on top (512-byte sectors)", "filefrag", "-b512", "-v", file)
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^\s*0:\s*0\.\.\s*\d+:\s*(\d+)\.\.`).FindStringSubmatch(out)
	if m == nil {
		return errors.New("filefrag shows no extent")
	}
	where := dx("which leaf that is", "map", "top", m[1])
	lm := regexp.MustCompile(`-> (\S+) (\d+) \(leaf\)`).FindStringSubmatch(where)
	if lm == nil {
		return errors.New("map shows no leaf")
	}
	dx("a media error on that leaf sector", "inject", lm[1], "--sector", lm[2], "--count", "1")
	dx("translated up the stack: top's bad sectors", "badblocks", "top")
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
	shell("the filesystem's reader gets EIO", "head", "-c", "33", file)
	dx("clearing the poison (as a rewrite would)", "clear-errors", lm[1])
	shell("", "head", "-c", "33", file)
	dx("fstests-style: a failure range under the file's first block", "error-range", "top", m[1], "8")
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
	shell("", "head", "-c", "33", file)
	dx("and good again", "good-range", "top", m[1], "8")
	shell("", "head", "-c", "33", file)
	dx("busy while mounted, as with dmsetup", "remove", "top")
	shell("clean up", "umount", mnt)
	dx("", "remove", "top", "s0")
	return nil
}
