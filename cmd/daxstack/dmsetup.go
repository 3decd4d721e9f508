package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Invoked as dmsetup (a link named dmsetup to this binary), daxstack is
// dmsetup: lvm2's test library and fstests run `dmsetup` by name. Only
// dmsetup's verbs and options are accepted, and reports print only what
// dmsetup prints. daxstack's global options are not options then; the
// environment (DAXSTACK_DB, DAXSTACK_SOCKET, ...) still sets them.

// dmsetupVerbs are the verbs of dmsetup that daxstack has.
var dmsetupVerbs = []string{
	"create", "load", "reload", "remove", "remove_all", "suspend", "resume", "clear",
	"wipe_table", "rename", "message", "ls", "info", "deps", "status", "table", "targets",
	"version", "help",
	"udevcreatecookie", "udevreleasecookie", "udevcomplete", "udevcomplete_all", "udevcookies",
}

// dmsetupUnsupported are dmsetup's verbs that daxstack does not have.
var dmsetupUnsupported = []string{"wait", "mknodes", "mangle", "setgeometry", "splitname", "stats", "measure"}

func isDmsetup(app *cli.App) bool { return app.Name == "dmsetup" }

// asDmsetup turns the app into dmsetup: its name, its verbs, and on each
// verb only the options dmsetup has.
func asDmsetup(app *cli.App) {
	app.Name = "dmsetup"
	app.Usage = "low level logical volume management (daxstack's user-space device-mapper)"
	app.HideVersion = true
	for _, f := range app.Flags {
		setHidden(f)
	}
	var cmds []*cli.Command
	for _, c := range app.Commands {
		if !slices.Contains(dmsetupVerbs, c.Name) {
			continue
		}
		c.Flags = slices.DeleteFunc(c.Flags, func(f cli.Flag) bool {
			for _, n := range f.Names() {
				if _, ok := dmLongOpts[n]; ok {
					return false
				}
				if _, ok := dmShortOpts[n]; ok {
					return false
				}
			}
			return true
		})
		cmds = append(cmds, c)
	}
	for _, n := range dmsetupUnsupported {
		name := n
		cmds = append(cmds, &cli.Command{
			Name: name, Usage: "not supported by daxstack", HideHelp: true, Hidden: true, SkipFlagParsing: true,
			Action: func(*cli.Context) error {
				return usagef("dmsetup %s is not supported by daxstack.", name)
			},
		})
	}
	app.Commands = cmds
}

func setHidden(f cli.Flag) {
	switch f := f.(type) {
	case *cli.StringFlag:
		f.Hidden = true
	case *cli.BoolFlag:
		f.Hidden = true
	case *cli.DurationFlag:
		f.Hidden = true
	}
}

// dmsetupVersion makes `dmsetup --version` the version verb, as dmsetup
// prints its versions for either.
func dmsetupVersion(app *cli.App, argv []string) []string {
	if !isDmsetup(app) {
		return argv
	}
	for _, a := range argv[1:] {
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		if a == "--version" {
			return []string{argv[0], "version"}
		}
	}
	return argv
}

// udevCommands are dmsetup's udev cookie verbs. daxstack creates no
// device nodes through udev (the daemon makes /dev/mapper nodes itself),
// so it behaves as a dmsetup built without udev synchronisation: no
// cookie is made (udevcreatecookie prints nothing), and completing or
// releasing one has nothing to wait for.
func udevCommands() []*cli.Command {
	nothing := func(args string, min int) *cli.Command {
		return &cli.Command{
			ArgsUsage: args, Hidden: true,
			Action: func(c *cli.Context) error {
				if c.NArg() < min {
					return usagef("Please specify a cookie.")
				}
				return nil
			},
		}
	}
	named := func(name string, c *cli.Command) *cli.Command {
		c.Name, c.Usage = name, "accepted for dmsetup compatibility (no udev synchronisation)"
		return c
	}
	return []*cli.Command{
		named("udevcreatecookie", nothing("", 0)),
		named("udevreleasecookie", nothing("[<cookie>]", 0)),
		named("udevcomplete", nothing("<cookie>", 1)),
		named("udevcomplete_all", nothing("[<age_in_minutes>]", 0)),
		named("udevcookies", nothing("", 0)),
	}
}
