package main

import (
	"io"
	"os"

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

// tableText returns a verb's table and where it came from, as dmsetup
// finds it: --table, else a table file argument, else standard input.
func tableText(c *cli.Context, fileArg int) (text, source string, err error) {
	if c.IsSet("table") {
		if c.NArg() > fileArg {
			return "", "", usagef("Incorrect number of arguments.")
		}
		return c.String("table"), stack.SourceInline, nil
	}
	if c.NArg() > fileArg {
		name := c.Args().Get(fileArg)
		b, err := os.ReadFile(name)
		if err != nil {
			return "", "", usagef("Couldn't open '%s' for reading", name)
		}
		return string(b), name, nil
	}
	b, err := io.ReadAll(c.App.Reader)
	if err != nil {
		return "", "", err
	}
	return string(b), stack.SourceStdin, nil
}

func createAction(c *cli.Context) error {
	x := newEnv(c)
	if c.Bool("concise") {
		if c.IsSet("table") || c.Bool("notable") || c.IsSet("uuid") {
			return usagef("--concise is incompatible with --table, --notable and --uuid.")
		}
		spec := c.Args().First()
		if c.NArg() == 0 {
			b, err := io.ReadAll(c.App.Reader)
			if err != nil {
				return err
			}
			spec = string(b)
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
	return x.api.Load(x.ctx(), control.LoadReq{Name: c.Args().First(), Table: text, Source: source})
}
