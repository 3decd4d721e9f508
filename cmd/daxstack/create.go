package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
)

func tableCommands() []*cli.Command {
	tableFlag := &cli.StringFlag{Name: "table", Usage: "the table `TEXT` (lines separated by newlines)"}
	return []*cli.Command{
		{
			Name:      "create",
			Usage:     "create a mapped device and make its table live",
			ArgsUsage: "<dev_name> [<table_file>] | --concise [<spec>]",
			Flags: []cli.Flag{
				tableFlag,
				&cli.StringFlag{Name: "uuid", Aliases: []string{"u"}, Usage: "device `UUID`"},
				&cli.BoolFlag{Name: "notable", Aliases: []string{"n"}, Usage: "create without a table"},
				&cli.BoolFlag{Name: "concise", Usage: "devices from dmsetup's concise format"},
				&cli.BoolFlag{Name: "readonly", Aliases: []string{"r"}, Usage: "mark the device read-only"},
			},
			Action: createAction,
		},
		{
			Name:      "load",
			Aliases:   []string{"reload"},
			Usage:     "load a table into the device's inactive slot (resume makes it live)",
			ArgsUsage: "<device> [<table_file>]",
			Flags:     []cli.Flag{tableFlag, &cli.BoolFlag{Name: "notable", Aliases: []string{"n"}, Hidden: true}},
			Action:    loadAction,
		},
	}
}

// Table input is bounded: a table read from standard input or a file
// stops at maxTableBytes or maxTableLines (a forgotten `< /dev/zero` or
// `yes | ...` must not eat the machine's memory), and the command is
// refused, changing nothing.
const (
	maxTableBytes = 64 << 20
	maxTableLines = 1_000_000
)

// sourceFlag names --table in "Invalid format on line N of table ...".
const sourceFlag = "given with --table"

// errTableTooBig is matched by a refused table that passed a bound.
var errTableTooBig = errors.New("table too large")

// tableText returns a verb's table and where it came from, as dmsetup
// finds it: --table, else a table file argument, else standard input.
func tableText(c *cli.Context, fileArg int) (text, source string, err error) {
	if c.IsSet("table") {
		if c.NArg() > fileArg {
			return "", "", usagef("Incorrect number of arguments.")
		}
		return c.String("table"), sourceFlag, nil
	}
	if c.NArg() > fileArg {
		name := c.Args().Get(fileArg)
		f, err := os.Open(name)
		if err != nil {
			return "", "", usagef("Couldn't open '%s' for reading", name)
		}
		defer f.Close()
		text, err := readTable(c.Context, f, "table file "+name)
		return text, name, err
	}
	text, err = readTable(c.Context, c.App.Reader, "table on stdin")
	return text, stack.SourceStdin, err
}

// readTable reads table text from r up to the bounds, and gives up when
// ctx ends (SIGINT, SIGTERM): reading a terminal or a pipe that never
// ends must not make the command uninterruptible. what names r in errors.
func readTable(ctx context.Context, r io.Reader, what string) (string, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		var b []byte
		lines := 0
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			lines += bytes.Count(buf[:n], []byte{'\n'})
			b = append(b, buf[:n]...)
			switch {
			case len(b) > maxTableBytes:
				done <- result{nil, fmt.Errorf("%s: more than %d MiB: %w", what, maxTableBytes>>20, errTableTooBig)}
				return
			case lines > maxTableLines:
				done <- result{nil, fmt.Errorf("%s: more than %d lines: %w", what, maxTableLines, errTableTooBig)}
				return
			case err == io.EOF:
				done <- result{b, nil}
				return
			case err != nil:
				done <- result{nil, fmt.Errorf("%s: %w", what, err)}
				return
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	select {
	case res := <-done:
		return string(res.b), res.err
	case <-ctx.Done():
		// The reader goroutine may stay blocked in read(2); the process
		// is about to exit.
		return "", fmt.Errorf("%s: interrupted while reading: %w", what, ctx.Err())
	}
}

// literalNewline reports the first table line (1-based) that holds a
// backslash followed by n: a shell's single quotes pass '\n' as two
// characters, so what was meant as several lines is one (0: none).
func literalNewline(text string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, `\n`) {
			return i + 1
		}
	}
	return 0
}

// tableFailed adds, to a refused table that holds a literal \n, what
// most likely happened.
func tableFailed(c *cli.Context, text string, err error) error {
	if err == nil {
		return nil
	}
	if n := literalNewline(text); n > 0 {
		fmt.Fprintf(c.App.ErrWriter, "%s: line %d of the table holds a literal \\n (a backslash and an n, not a newline): "+
			"single quotes keep it as it is. Separate the lines with real newlines: $'0 8 zero\\n8 8 error' in bash, "+
			"printf, or a table file.\n", c.App.Name, n)
	}
	return err
}

func createAction(c *cli.Context) error {
	x := newEnv(c)
	if c.Bool("concise") {
		if c.IsSet("table") || c.Bool("notable") || c.IsSet("uuid") {
			return usagef("--concise is incompatible with --table, --notable and --uuid.")
		}
		spec := c.Args().First()
		if c.NArg() == 0 {
			var err error
			if spec, err = readTable(c.Context, c.App.Reader, "concise specification on stdin"); err != nil {
				return err
			}
		}
		return x.api.CreateConcise(x.ctx(), control.ConciseReq{Spec: spec})
	}
	if c.NArg() < 1 || c.NArg() > 2 {
		return usagef("Please specify device name and at most one table file.")
	}
	req := control.CreateReq{Name: c.Args().First(), UUID: c.String("uuid"), ReadOnly: c.Bool("readonly")}
	if c.Bool("notable") {
		if c.IsSet("table") || c.NArg() > 1 {
			return usagef("--table and --notable are incompatible.")
		}
	} else {
		text, source, err := tableText(c, 1)
		if err != nil {
			return err
		}
		req.Table, req.Source = &text, source
		return tableFailed(c, text, x.api.Create(x.ctx(), req))
	}
	return x.api.Create(x.ctx(), req)
}

func loadAction(c *cli.Context) error {
	if c.Bool("notable") {
		return usagef("--notable only available when creating new device.")
	}
	if c.NArg() < 1 || c.NArg() > 2 {
		return usagef("Please specify a device and at most one table file.")
	}
	text, source, err := tableText(c, 1)
	if err != nil {
		return err
	}
	x := newEnv(c)
	return tableFailed(c, text, x.api.Load(x.ctx(), control.LoadReq{Name: c.Args().First(), Table: text, Source: source}))
}
