package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
)

func lifecycleCommands() []*cli.Command {
	// Accepted for dmsetup compatibility; daxstack has no file system to
	// freeze and no in-kernel queue to flush.
	compat := []cli.Flag{
		&cli.BoolFlag{Name: "nolockfs", Hidden: true}, &cli.BoolFlag{Name: "noflush", Hidden: true},
		&cli.BoolFlag{Name: "noudevsync", Hidden: true}, &cli.BoolFlag{Name: "noudevrules", Hidden: true},
	}
	perDevice := func(name, usage string, call func(x *env, c *cli.Context, dev string) error) *cli.Command {
		return &cli.Command{
			Name: name, Usage: usage, ArgsUsage: "<device>...", Flags: compat,
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return usagef("Please specify device(s).")
				}
				x := newEnv(c)
				for _, n := range names(c) {
					if err := call(x, c, n); err != nil {
						return err
					}
				}
				return nil
			},
		}
	}
	return []*cli.Command{
		perDevice("suspend", "suspend I/O to devices (new I/O waits for resume)", func(x *env, c *cli.Context, n string) error {
			return x.api.Suspend(x.ctx(), control.SuspendReq{Name: n, NoLockfs: c.Bool("nolockfs")})
		}),
		perDevice("resume", "make the inactive table live, if any, and resume I/O", func(x *env, c *cli.Context, n string) error {
			return x.api.Resume(x.ctx(), control.SuspendReq{Name: n, NoLockfs: c.Bool("nolockfs")})
		}),
		perDevice("clear", "drop the inactive table", func(x *env, c *cli.Context, n string) error {
			return x.api.Clear(x.ctx(), control.NameReq{Name: n})
		}),
		{
			Name: "wipe_table", Usage: "replace the table with one error segment of the same size", ArgsUsage: "<device>...",
			Flags: append([]cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}}}, compat...),
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return usagef("Please specify device(s).")
				}
				x := newEnv(c)
				for _, n := range names(c) {
					if err := x.api.WipeTable(x.ctx(), control.NameReq{Name: n}); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name: "remove", Usage: "remove devices", ArgsUsage: "<device>...",
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace the table with an error table first"},
				&cli.BoolFlag{Name: "retry", Usage: "retry for a few seconds while the device is busy"},
				&cli.BoolFlag{Name: "deferred", Usage: "if the device is in use, remove it when its last user goes"},
				&cli.StringFlag{Name: "mangle", Hidden: true},
			}, compat...),
			Action: removeAction,
		},
		{
			Name: "remove_all", Usage: "remove every device that nothing uses",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}}},
			Action: func(c *cli.Context) error {
				x := newEnv(c)
				return x.api.RemoveAll(x.ctx(), control.RemoveReq{Force: c.Bool("force")})
			},
		},
		{
			Name: "rename", Usage: "rename a device, or set its UUID once", ArgsUsage: "<device> [--setuuid] <new_name_or_uuid>",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "setuuid"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return usagef("Incorrect number of arguments.")
				}
				x := newEnv(c)
				return x.api.Rename(x.ctx(), control.RenameReq{Name: c.Args().Get(0), New: c.Args().Get(1), SetUUID: c.Bool("setuuid")})
			},
		},
		{
			Name: "message", Usage: "send a message to the target at a sector", ArgsUsage: "<device> <sector> <message>...",
			Action: func(c *cli.Context) error {
				if c.NArg() < 2 {
					return usagef("Incorrect number of arguments.")
				}
				sector, err := strconv.ParseUint(c.Args().Get(1), 10, 64)
				if err != nil {
					return usagef("Invalid sector: %s", c.Args().Get(1))
				}
				// dmsetup re-joins the words with single spaces; the target
				// splits them again like table parameters.
				args := stack.SplitArgs(strings.Join(c.Args().Slice()[2:], " "))
				x := newEnv(c)
				resp, err := x.api.Message(x.ctx(), control.MessageReq{Name: c.Args().First(), Sector: sector, Args: args})
				if err != nil {
					return err
				}
				if resp.Reply != "" {
					fmt.Fprintln(c.App.Writer, strings.TrimSuffix(resp.Reply, "\n"))
				}
				return nil
			},
		},
	}
}

// Retries of remove --retry, as libdm's DM_IOCTL_RETRIES and
// DM_RETRY_USLEEP_DELAY: 25 tries, 200 ms apart.
const (
	removeRetries = 25
	removeDelay   = 200 * time.Millisecond
)

func removeAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usagef("Please specify device(s).")
	}
	x := newEnv(c)
	for _, n := range names(c) {
		req := control.RemoveReq{Name: n, Force: c.Bool("force"), Deferred: c.Bool("deferred")}
		for try := 1; ; try++ {
			err := x.api.Remove(x.ctx(), req)
			if err == nil {
				break
			}
			if !c.Bool("retry") || !errors.Is(err, stack.ErrBusy) || try == removeRetries {
				return err
			}
			req.Force = false // the table was already replaced
			select {
			case <-x.ctx().Done():
				return err
			case <-time.After(removeDelay):
			}
		}
	}
	return nil
}
