package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func daxCommands() []*cli.Command {
	rangeFlags := []cli.Flag{
		&cli.Uint64Flag{Name: "sector", Aliases: []string{"s"}, Usage: "first `SECTOR`"},
		&cli.Uint64Flag{Name: "count", Aliases: []string{"n"}, Usage: "number of sectors"},
	}
	return []*cli.Command{
		{
			Name: "map", Usage: "show where sectors of a device live, level by level down to the leaf",
			ArgsUsage: "<device> <sector> [<count>]", Flags: []cli.Flag{reportFormatFlag},
			Action: mapAction,
		},
		{
			Name: "rmap", Usage: "show every device range backed by sectors of a device or leaf",
			ArgsUsage: "<device> <sector> [<count>]", Flags: []cli.Flag{reportFormatFlag},
			Action: rmapAction,
		},
		{
			Name: "badblocks", Usage: "show a device's bad ranges (translated for mapped devices), as sysfs does",
			ArgsUsage: "<device>", Flags: []cli.Flag{reportFormatFlag},
			Action: badblocksAction,
		},
		{
			Name: "inject", Usage: "poison sectors of a device or leaf (mapped down to the leaves)",
			ArgsUsage: "<device> --sector S --count N", Flags: rangeFlags,
			Action: func(c *cli.Context) error { return poisonAction(c, "inject") },
		},
		{
			Name: "clear-errors", Usage: "clear poison under a device or leaf (all of it without --sector/--count)",
			ArgsUsage: "<device> [--sector S --count N]", Flags: rangeFlags,
			Action: func(c *cli.Context) error { return poisonAction(c, "clear-errors") },
		},
		{
			Name: "error-range", Usage: "make sectors fail by splicing an error segment into the table (fstests' _dmerror_mark_range_bad)",
			ArgsUsage: "<device> <sector> <count>",
			Action:    func(c *cli.Context) error { return spliceAction(c, "error-range") },
		},
		{
			Name: "good-range", Usage: "undo error-range for sectors (fstests' _dmerror_mark_range_good)",
			ArgsUsage: "<device> <sector> <count>",
			Action:    func(c *cli.Context) error { return spliceAction(c, "good-range") },
		},
	}
}

// sectorArgs parses "<device> <sector> [<count>]" positionals.
func sectorArgs(c *cli.Context, needCount bool) (control.RangeReq, error) {
	min, max := 2, 3
	if needCount {
		min = 3
	}
	if c.NArg() < min || c.NArg() > max {
		return control.RangeReq{}, usagef("Incorrect number of arguments.")
	}
	r := control.RangeReq{Name: c.Args().Get(0), Count: 1}
	var err error
	if r.Sector, err = strconv.ParseUint(c.Args().Get(1), 10, 64); err != nil {
		return r, usagef("Invalid sector: %s", c.Args().Get(1))
	}
	if c.NArg() == 3 {
		if r.Count, err = strconv.ParseUint(c.Args().Get(2), 10, 64); err != nil || r.Count == 0 {
			return r, usagef("Invalid count: %s", c.Args().Get(2))
		}
	}
	return r, nil
}

// rangeCall runs call with the verb's "<dev> <sector> [<count>]".
func rangeCall[R any](c *cli.Context, call func(*env, control.RangeReq) (R, error)) (*env, R, error) {
	var resp R
	r, err := sectorArgs(c, false)
	if err != nil {
		return nil, resp, err
	}
	x := newEnv(c)
	resp, err = call(x, r)
	return x, resp, err
}

func mapAction(c *cli.Context) error {
	x, pieces, err := rangeCall(c, func(x *env, r control.RangeReq) ([]control.MapPiece, error) { return x.api.Map(x.ctx(), r) })
	if err != nil {
		return err
	}
	if x.json() {
		rows := []row{}
		for _, p := range pieces {
			for i, l := range p.Levels {
				r := row{}.with("level", i).with("device", l.Device).with("sector", l.Sector).with("count", l.Count).
					with("target", l.Target).with("segment_start", l.SegStart).with("segment_length", l.SegLength)
				if l.Child != "" {
					r = r.with("child", l.Child).with("child_sector", l.ChildSector).with("leaf", l.Leaf)
				}
				if l.Error != "" {
					r = r.with("error", l.Error)
				}
				rows = append(rows, r)
			}
		}
		return printJSON(x.out, "map", rows)
	}
	for i, p := range pieces {
		if len(pieces) > 1 {
			if i > 0 {
				fmt.Fprintln(x.out)
			}
			fmt.Fprintf(x.out, "sectors %d+%d:\n", p.Sector, p.Count)
		}
		for _, l := range p.Levels {
			head := fmt.Sprintf("%s %d+%d %s [%d+%d]", l.Device, l.Sector, l.Count, l.Target, l.SegStart, l.SegLength)
			switch {
			case l.Error != "":
				fmt.Fprintf(x.out, "%s: %s\n", head, l.Error)
			case l.Child == "":
				fmt.Fprintf(x.out, "%s: no backing store (reads zeros, drops writes)\n", head)
			case l.Leaf:
				fmt.Fprintf(x.out, "%s -> %s %d (leaf)\n", head, l.Child, l.ChildSector)
			default:
				fmt.Fprintf(x.out, "%s -> %s %d\n", head, l.Child, l.ChildSector)
			}
		}
	}
	return nil
}

// rangeRows turns device ranges into report rows: one per run, with stride
// and count for strided runs.
func rangeRows(sets ...control.DeviceRanges) []row {
	rows := []row{}
	for _, s := range sets {
		for _, r := range s.Ranges.Runs() {
			x := row{}.with("device", s.Device).with("offset", r.Start).with("length", r.Len)
			if r.Count > 1 {
				x = x.with("stride", r.Stride).with("count", r.Count)
			}
			rows = append(rows, x)
		}
	}
	return rows
}

func rmapAction(c *cli.Context) error {
	x, sets, err := rangeCall(c, func(x *env, r control.RangeReq) ([]control.DeviceRanges, error) { return x.api.Rmap(x.ctx(), r) })
	if err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.out, "rmap", rangeRows(sets...))
	}
	for _, s := range sets {
		for e := range s.Ranges.Extents() {
			fmt.Fprintf(x.out, "%s %d %d\n", s.Device, e.Start, e.Len)
		}
	}
	return nil
}

func badblocksAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("Please specify one device.")
	}
	x := newEnv(c)
	s, err := x.api.Badblocks(x.ctx(), control.NameReq{Name: c.Args().First()})
	if err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.out, "badblocks", rangeRows(s))
	}
	printBadblocks(x.out, s.Ranges)
	return nil
}

// printBadblocks prints a set as sysfs badblocks does: "start count" per
// coalesced extent, sorted.
func printBadblocks(w io.Writer, s extent.Set) {
	for e := range s.Extents() {
		fmt.Fprintf(w, "%d %d\n", e.Start, e.Len)
	}
}

func poisonAction(c *cli.Context, method string) error {
	if c.NArg() != 1 {
		return usagef("Please specify one device.")
	}
	r := control.RangeReq{Name: c.Args().First(), Sector: c.Uint64("sector"), Count: c.Uint64("count")}
	switch {
	case method == "clear-errors" && !c.IsSet("sector") && !c.IsSet("count"):
		r.All = true
	case !c.IsSet("sector") || !c.IsSet("count") || r.Count == 0:
		return usagef("--sector and a non-zero --count are required.")
	}
	x := newEnv(c)
	call := x.api.Inject
	if method == "clear-errors" {
		call = x.api.ClearErrors
	}
	resp, err := call(x.ctx(), r)
	if err != nil {
		return err
	}
	verb := "poisoned"
	if method == "clear-errors" {
		verb = "cleared"
	}
	for _, l := range resp.Leaves {
		fmt.Fprintf(x.out, "%s %s %d %d\n", verb, l.Leaf, l.Sector, l.Count)
	}
	for _, s := range resp.Skipped {
		fmt.Fprintf(x.errw, "skipped %s %d %d: %s\n", r.Name, s.Sector, s.Count, s.Why)
	}
	return nil
}

func spliceAction(c *cli.Context, method string) error {
	r, err := sectorArgs(c, true)
	if err != nil {
		return err
	}
	x := newEnv(c)
	if method == "good-range" {
		return x.api.GoodRange(x.ctx(), r)
	}
	return x.api.ErrorRange(x.ctx(), r)
}

func ioCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "read", Usage: "read sectors through a device's stack to standard output",
			ArgsUsage: "<device> --sector S --count N",
			Flags: []cli.Flag{
				requiredUint64{&cli.Uint64Flag{Name: "sector", Aliases: []string{"s"}, Usage: "first `SECTOR` (required)", Required: true}},
				&cli.Uint64Flag{Name: "count", Aliases: []string{"n"}, Usage: "number of sectors", Value: 1},
			},
			Action: readAction,
		},
		{
			Name: "write", Usage: "write standard input through a device's stack at a sector",
			ArgsUsage: "<device> --sector S",
			Flags: []cli.Flag{
				requiredUint64{&cli.Uint64Flag{Name: "sector", Aliases: []string{"s"}, Usage: "first `SECTOR` (required)", Required: true}},
			},
			Action: writeAction,
		},
	}
}

// byteOffset returns the sector count of flag name in bytes, refusing a
// number whose byte offset would not fit an int64 (it would wrap).
func byteOffset(c *cli.Context, name string) (int64, error) {
	v := c.Uint64(name)
	if v > math.MaxInt64/stack.SectorSize {
		return 0, usagef("--%s %d is too large.", name, v)
	}
	return int64(v) * stack.SectorSize, nil
}

// ioChunk bounds one read or write request, so that huge transfers stream.
const ioChunk = control.MaxIO

// ioStart checks read's and write's one device argument and returns the
// byte offset of --sector.
func ioStart(c *cli.Context) (*env, int64, error) {
	if c.NArg() != 1 {
		return nil, 0, usagef("Please specify one device.")
	}
	off, err := byteOffset(c, "sector")
	if err != nil {
		return nil, 0, err
	}
	return newEnv(c), off, nil
}

func readAction(c *cli.Context) error {
	x, off, err := ioStart(c)
	if err != nil {
		return err
	}
	left, err := byteOffset(c, "count")
	if err != nil {
		return err
	}
	dev := c.Args().First()
	h, err := x.api.Open(x.ctx(), control.OpenReq{Name: dev})
	if err != nil {
		return err
	}
	defer h.Close()
	buf := make([]byte, min(left, ioChunk))
	for left > 0 {
		n := min(left, ioChunk)
		k, err := h.ReadAtContext(x.ctx(), buf[:n], off)
		if _, werr := x.out.Write(buf[:k]); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil // end of device: a short read, as dd on a block device
		}
		if err != nil {
			return ioFailure(x, "read", dev, err)
		}
		off += n
		left -= n
	}
	return nil
}

func writeAction(c *cli.Context) error {
	x, off, err := ioStart(c)
	if err != nil {
		return err
	}
	dev := c.Args().First()
	h, err := x.api.Open(x.ctx(), control.OpenReq{Name: dev, Write: true})
	if err != nil {
		return err
	}
	defer h.Close()
	buf := make([]byte, ioChunk)
	in := &ctxReader{ctx: x.ctx(), r: c.App.Reader}
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			if _, err := h.WriteAtContext(x.ctx(), buf[:n], off); err != nil {
				return ioFailure(x, "write", dev, err)
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			// What was written is durable when the command ends.
			if err := h.Flush(x.ctx()); err != nil {
				return ioFailure(x, "write", dev, err)
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("write %s: standard input: %w", dev, rerr)
		}
	}
}

// ioFailure prints a failed read or write as "daxstack: read top: sector
// 324: Input/output error (<leaf detail>)" and marks it shown.
func ioFailure(x *env, op, dev string, err error) error {
	var ioe *stack.IOError
	if errors.As(err, &ioe) {
		fmt.Fprintf(x.errw, "daxstack: %s %s: %s sector %d: %s", op, dev, ioe.Device, ioe.Sector, control.Strerror(errno(err)))
		if inner := ioe.Err.Error(); inner != errno(err).Error() {
			fmt.Fprintf(x.errw, " (%s)", inner)
		}
		fmt.Fprintln(x.errw)
		return errShown{err}
	}
	return err
}
