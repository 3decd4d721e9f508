package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
)

func filesCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "files",
		Usage: "name the files, byte ranges and metadata that a device's bad ranges (or a range) hit on its mounted filesystem",
		Description: "DEV is a mapped device (its block device is the daemon's export, /dev/daxstack/DEV), a leaf,\n" +
			"or any block device (/dev/loopN, /dev/pmem0: its badblocks in sysfs, or the range given).\n" +
			"File ranges are bytes of the file; metadata and free ranges are sectors of the device.",
		ArgsUsage: "<device> [--sector S --count N]",
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "sector", Aliases: []string{"s"}, Usage: "first `SECTOR` of a range to look up instead of the bad ranges"},
			&cli.Uint64Flag{Name: "count", Aliases: []string{"n"}, Usage: "`SECTORS` of the range"},
			&cli.IntFlag{Name: "limit", Usage: "at most `N` entries", Value: control.DefaultFilesLimit},
			reportFormatFlag,
		},
		Action: filesAction,
	}}
}

func filesAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("Please specify one device.")
	}
	if c.IsSet("sector") != c.IsSet("count") || (c.IsSet("count") && c.Uint64("count") == 0) {
		return usagef("--sector and --count go together, with a count of at least 1.")
	}
	x := newEnv(c)
	r, err := x.api.Files(x.ctx(), control.FilesReq{Name: c.Args().First(), Sector: c.Uint64("sector"), Count: c.Uint64("count"), Limit: c.Int("limit")})
	if err != nil {
		return err
	}
	if x.json() {
		fsRow := row{}.with("device", r.Device).with("block_device", fmt.Sprintf("%d:%d", r.Major, r.Minor)).
			with("mount", r.Mount).with("fstype", r.FSType).with("method", r.Method).
			with("ranges", r.Ranges).with("files_truncated", r.FilesTruncated)
		el := row{}.with("filesystem", []row{fsRow}).with("files", r.Files).with("metadata", r.Metadata).with("free", r.Free)
		b, err := json.MarshalIndent(map[string]any{"report": []row{el}}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(x.out, string(b))
		return err
	}
	fmt.Fprintf(x.out, "filesystem\t%s\t%s on %d:%d\t(%s)\n", r.Mount, r.FSType, r.Major, r.Minor, r.Method)
	if r.Ranges.Empty() {
		fmt.Fprintf(x.out, "(%s has no bad ranges)\n", r.Device)
		return nil
	}
	return r.Report.WriteText(x.out)
}
