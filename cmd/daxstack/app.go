package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
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
		CommandNotFound: func(c *cli.Context, name string) {
			c.App.Metadata["unknown"] = name
		},
		Metadata: map[string]any{},
	}
	return app
}

// commands returns every verb, one family per file.
func commands() []*cli.Command {
	var out []*cli.Command
	for _, f := range []func() []*cli.Command{
		tableCommands, lifecycleCommands, reportCommands, daxCommands, ioCommands, daemonCommands, quickstartCommands,
	} {
		out = append(out, f()...)
	}
	return out
}

// reportFormatFlag is --reportformat basic|json on every report verb.
var reportFormatFlag = &cli.StringFlag{Name: "reportformat", Usage: "`basic` text or `json` (LVM's report shape)", Value: "basic"}

// env is what a verb needs: its arguments, the engine to call, and where
// to print.
type env struct {
	c      *cli.Context
	caller control.Caller
	out    io.Writer
	errw   io.Writer
}

// newEnv returns the environment of a verb, choosing the daemon when its
// socket answers, else the database directly.
func newEnv(c *cli.Context) *env {
	return &env{c: c, caller: chooseCaller(c), out: c.App.Writer, errw: c.App.ErrWriter}
}

func (x *env) ctx() context.Context { return x.c.Context }

// call runs a method and decodes its result into out (may be nil).
func (x *env) call(method string, req any, out any) error {
	params, err := json.Marshal(req)
	if err != nil {
		return err
	}
	res, err := x.caller.Call(x.ctx(), method, params)
	if out != nil && len(res) > 0 {
		if uerr := json.Unmarshal(res, out); uerr != nil && err == nil {
			err = uerr
		}
	}
	return err
}

func (x *env) json() bool { return x.c.String("reportformat") == "json" }

// chooseCaller picks the daemon if its socket accepts connections (and
// --no-daemon is not given), else an embedded engine on the database.
func chooseCaller(c *cli.Context) control.Caller {
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
	return &localCaller{cfg: cfg, dialErr: dialErr}
}

// localCaller opens the database for each call: shared for reports,
// exclusive for changes, so concurrent daxstack processes serialise on
// bbolt's lock.
type localCaller struct {
	cfg     control.Config
	dialErr error // why the daemon's socket could not be used, if it exists
}

func (l *localCaller) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	m, ok := control.Lookup(method)
	if !ok {
		return nil, usagef("unknown command %q", method)
	}
	if m.Stateless {
		return control.CallStateless(ctx, method, params)
	}
	cfg := l.cfg
	cfg.ReadOnly = !m.Mutates
	if cfg.ReadOnly {
		if _, err := os.Stat(cfg.DB); errors.Is(err, os.ErrNotExist) {
			// Nothing was ever stored: report on an empty state without
			// creating a database for a read.
			cfg.DB = ""
			return emptyState(ctx, method, params)
		}
	}
	e, err := control.Open(cfg)
	if cfg.ReadOnly && errors.Is(err, store.ErrNotFound) {
		// The file is empty or was never initialised: the first command
		// that would have created it was killed. Nothing was stored.
		return emptyState(ctx, method, params)
	}
	if err != nil {
		if l.dialErr != nil {
			return nil, fmt.Errorf("%v, and the database cannot be opened directly: %w", l.dialErr, err)
		}
		return nil, err
	}
	defer e.Close()
	return e.Call(ctx, method, params)
}

// emptyState answers a report on a database that does not exist yet, with
// a throw-away engine on an empty database in a temporary directory.
func emptyState(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	dir, err := os.MkdirTemp("", "daxstack-empty-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	e, err := control.Open(control.Config{DB: dir + "/empty.db"})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	return e.Call(ctx, method, params)
}

// names returns the positional arguments as device names.
func names(c *cli.Context) []string { return c.Args().Slice() }

var _ = strings.TrimSpace
