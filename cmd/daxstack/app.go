package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/store"
)

// Environment variables, also settable as global flags.
const (
	envDB      = "DAXSTACK_DB"
	envSocket  = "DAXSTACK_SOCKET"
	envTimeout = "DAXSTACK_LOCK_TIMEOUT"
	envSysfs   = "DAXSTACK_SYSFS"
	envDev     = "DAXSTACK_DEVDIR"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/daxstack/daxstack.sock"

func init() {
	// --version only: -v is dmsetup's --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
}

// newApp returns the command line of daxstack, or of dmsetup when dmsetup
// is true (the program was invoked by that name; see dmsetup.go).
func newApp(stdin io.Reader, stdout, stderr io.Writer, dmsetup bool) *cli.App {
	app := &cli.App{
		Name:      "daxstack",
		Usage:     "stack DAX devices like device-mapper and carry bad ranges up the stack",
		Version:   control.Version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "database `FILE`", Value: store.DefaultPath, EnvVars: []string{envDB}},
			&cli.StringFlag{Name: "socket", Usage: "daemon socket `PATH` (used when the daemon runs)", Value: DefaultSocket, EnvVars: []string{envSocket}},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "how long to wait for another daxstack process", Value: 10 * time.Second, EnvVars: []string{envTimeout}},
			&cli.BoolFlag{Name: "no-daemon", Usage: "work on the database directly even if the daemon runs"},
			&cli.StringFlag{Name: "sysfs", Usage: "sysfs root (tests)", Value: "/sys", EnvVars: []string{envSysfs}, Hidden: true},
			&cli.StringFlag{Name: "devdir", Usage: "device directory (tests)", Value: "/dev", EnvVars: []string{envDev}, Hidden: true},
		},
		Commands:        commands(),
		HideHelpCommand: false,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return usageError{err.Error()}
		},
		Metadata: map[string]any{},
		Before:   checkGlobals,
	}
	if dmsetup {
		asDmsetup(app)
	}
	return app
}

// commands returns every verb, one family per file.
func commands() []*cli.Command {
	var out []*cli.Command
	for _, f := range []func() []*cli.Command{
		tableCommands, lifecycleCommands, reportCommands, daxCommands, ioCommands, daemonCommands, quickstartCommands, udevCommands, leavesCommands, filesCommands,
	} {
		out = append(out, f()...)
	}
	return out
}

// reportFormatFlag is --reportformat basic|json on every report verb.
var reportFormatFlag = &cli.StringFlag{
	Name: "reportformat", Usage: "`basic` text or `json` (LVM's report shape)", Value: "basic",
	Action: func(_ *cli.Context, v string) error {
		if v != "basic" && v != "json" {
			return usagef("Unknown report format: %s (basic or json).", v)
		}
		return nil
	},
}

// checkGlobals refuses global settings that have no sensible meaning.
func checkGlobals(c *cli.Context) error {
	if d := c.Duration("lock-timeout"); d <= 0 {
		return usagef("--lock-timeout (or %s) must be a positive duration, not %v.", envTimeout, d)
	}
	return nil
}

// requiredUint64 is a required number flag: its help shows no default.
type requiredUint64 struct{ *cli.Uint64Flag }

// GetDefaultText returns "": a required flag has no default.
func (requiredUint64) GetDefaultText() string { return "" }

// env is what a verb needs: its arguments, the engine (control.API: the
// daemon's client, or the database directly), and where to print.
type env struct {
	c    *cli.Context
	api  control.API
	out  io.Writer
	errw io.Writer
	dm   bool // invoked as dmsetup: dmsetup's output only
}

// newEnv returns the environment of a verb, choosing the daemon when its
// socket answers, else the database directly.
func newEnv(c *cli.Context) *env {
	return &env{c: c, api: chooseAPI(c), out: c.App.Writer, errw: c.App.ErrWriter, dm: isDmsetup(c.App)}
}

func (x *env) ctx() context.Context { return x.c.Context }

func (x *env) json() bool { return x.c.String("reportformat") == "json" }

// chooseAPI picks the daemon if its socket accepts connections (and
// --no-daemon is not given), else an embedded engine on the database,
// opened for each call (control.Local).
func chooseAPI(c *cli.Context) control.API {
	cfg := control.Config{
		DB:          c.String("db"),
		LockTimeout: c.Duration("lock-timeout"),
		SysfsRoot:   c.String("sysfs"),
		DevRoot:     c.String("devdir"),
	}
	var dialErr error
	if !c.Bool("no-daemon") {
		cl, err := dialDaemon(c.String("socket"))
		if err == nil {
			return cl
		}
		// No socket, or no one listening: no daemon, work directly. A
		// socket that refuses us (permissions) is worth mentioning if the
		// database then cannot be opened either.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			dialErr = fmt.Errorf("the daemon's socket %s: %w", c.String("socket"), err)
		}
	}
	return &control.Local{Config: cfg, DialErr: dialErr}
}

// names returns the positional arguments as device names.
func names(c *cli.Context) []string { return c.Args().Slice() }

// String is the flag's help line, without a default.
func (r requiredUint64) String() string { return cli.FlagStringer(r) }
