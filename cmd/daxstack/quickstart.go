package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

func quickstartCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "quickstart",
		Usage: "build file-backed leaves and a stack in a temporary directory, inject a leaf error and show it translated at every level",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary directory"},
			&cli.BoolFlag{Name: "daemon", Usage: "as root: run a daemon with its exports, put a filesystem on the stack and show a leaf failure reaching it"},
		},
		Action: func(c *cli.Context) error {
			dir, err := os.MkdirTemp("", "daxstack-quickstart-")
			if err != nil {
				return err
			}
			if c.Bool("keep") {
				fmt.Fprintf(c.App.Writer, "# keeping %s\n", dir)
			} else {
				defer os.RemoveAll(dir)
			}
			if c.Bool("daemon") {
				return quickstartDaemon(c, dir)
			}
			return quickstart(c, dir)
		},
	}}
}

// quickstart runs a scripted session of daxstack commands, printing each
// command and its output, against a database and leaves in dir. It is the
// kernel oracle's stack (testdata/kernel-oracle) on files: a 2-way stripe
// with 8-sector chunks, and on top of it a linear slice, an error hole and
// a linear piece of a third leaf.
func quickstart(c *cli.Context, dir string) error {
	w := c.App.Writer
	leaf := func(i int) string { return filepath.Join(dir, fmt.Sprintf("leaf%d.img", i)) }
	for i := range 3 {
		f, err := os.Create(leaf(i))
		if err != nil {
			return err
		}
		if err := f.Truncate(64 << 20); err != nil { // 64 MiB, sparse
			f.Close()
			return err
		}
		f.Close()
	}
	db := filepath.Join(dir, "daxstack.db")
	step := func(comment string, stdin string, args ...string) error {
		if comment != "" {
			fmt.Fprintf(w, "\n# %s\n", comment)
		}
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = strings.ReplaceAll(a, dir+"/", "")
			switch {
			case strings.Contains(shown[i], "\n"):
				// bash's $'...', so that the line works when pasted (in
				// '...' a \n stays a backslash and an n)
				shown[i] = "$'" + strings.ReplaceAll(shown[i], "\n", "\\n") + "'"
			case strings.Contains(shown[i], " "):
				shown[i] = "'" + shown[i] + "'"
			}
		}
		fmt.Fprintf(w, "$ daxstack %s\n", strings.Join(shown, " "))
		var out, errb bytes.Buffer
		full := append([]string{"daxstack", "--db", db, "--no-daemon"}, args...)
		code := run(c.Context, full, strings.NewReader(stdin), &out, &errb)
		io.Copy(w, &out)
		io.Copy(w, &errb)
		if code != 0 {
			fmt.Fprintf(w, "(exit status %d)\n", code)
		}
		return nil
	}
	pattern := strings.Repeat("daxstack", 64*8) // 8 sectors of text
	steps := []struct {
		comment, stdin string
		args           []string
	}{
		{"three file-backed leaves of 64 MiB in " + dir, "", []string{"targets"}},
		{"s0: 2 stripes, 8-sector chunks, leaf0 from sector 64, leaf1 from sector 128", "",
			[]string{"create", "s0", "--table", fmt.Sprintf("0 2048 striped 2 8 %s 64 %s 128", leaf(0), leaf(1))}},
		{"top: a slice of s0, an error hole, a slice of leaf2", "",
			[]string{"create", "top", "--table", fmt.Sprintf("0 1000 linear s0 24\n1000 16 error\n1016 200 linear %s 40", leaf(2))}},
		{"", "", []string{"ls", "--tree"}},
		{"", "", []string{"table"}},
		{"write 8 sectors through the stack at top sector 320", pattern, []string{"write", "top", "--sector", "320"}},
		{"where does top sector 324 live?", "", []string{"map", "top", "324"}},
		{"a media error on leaf1: sectors 300..303", "", []string{"inject", leaf(1), "--sector", "300", "--count", "4"}},
		{"the bad ranges at every level (sysfs badblocks format: start count)", "", []string{"badblocks", leaf(1)}},
		{"", "", []string{"badblocks", "s0"}},
		{"top also fails in its error segment", "", []string{"badblocks", "top"}},
		{"everything the bad leaf range backs", "", []string{"rmap", leaf(1), "300", "4", "--reportformat", "json"}},
		{"reads fail exactly where a bad sector is touched", "", []string{"read", "top", "--sector", "324", "--count", "1"}},
		{"", "", []string{"read", "top", "--sector", "323", "--count", "1"}},
		{"the event log, one JSON object per line", "", []string{"watch", "--no-follow"}},
		{"rewriting the bad sectors clears them (as the pmem driver does)", pattern[:4*512], []string{"write", "top", "--sector", "324"}},
		{"", "", []string{"badblocks", "top"}},
		{"fstests-style: mark top sectors 100..107 bad by splicing an error segment", "", []string{"error-range", "top", "100", "8"}},
		{"", "", []string{"table", "top"}},
		{"and good again: the original table comes back", "", []string{"good-range", "top", "100", "8"}},
		{"", "", []string{"table", "top"}},
		{"clean up", "", []string{"remove", "top", "s0"}},
	}
	for _, s := range steps {
		if s.args[0] == "read" {
			// Show what was read as text rather than raw sectors.
			var out, errb bytes.Buffer
			if s.comment != "" {
				fmt.Fprintf(w, "\n# %s\n", s.comment)
			}
			fmt.Fprintf(w, "$ daxstack %s | head -c 16\n", strings.Join(s.args, " "))
			code := run(c.Context, append([]string{"daxstack", "--db", db, "--no-daemon"}, s.args...), strings.NewReader(""), &out, &errb)
			b := out.Bytes()
			if len(b) > 16 {
				b = b[:16]
			}
			fmt.Fprintf(w, "%s", b)
			if len(b) > 0 {
				fmt.Fprintln(w)
			}
			io.Copy(w, &errb)
			if code != 0 {
				fmt.Fprintf(w, "(exit status %d)\n", code)
			}
			continue
		}
		if err := step(s.comment, s.stdin, s.args...); err != nil {
			return err
		}
	}
	return nil
}
