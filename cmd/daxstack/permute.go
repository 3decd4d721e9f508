package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permute rewrites a command line so that options may come anywhere, as
// with dmsetup (GNU getopt): scripts write `daxstack create NAME --table
// "..."`, and urfave/cli stops reading options at the first positional
// argument. It is decided once, here, for every verb: the options of the
// verb and the global options are moved in front of the positional
// arguments, which follow a "--" so that none of them is mistaken for an
// option. An option that takes a value keeps the token after it.
func permute(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := flagSpecs(app.Flags)
	var global []string
	i := 1
	for i < len(args) && isOption(args[i]) {
		if args[i] == "--" {
			return args
		}
		n := takeOption(args, i, globals)
		global = append(global, args[i:i+n]...)
		i += n
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	name := args[i]
	specs := flagSpecs(cmd.Flags)
	var flags, pos []string
	for i++; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case !isOption(a):
			pos = append(pos, a)
		case known(a, specs) || !known(a, globals):
			n := takeOption(args, i, specs)
			flags = append(flags, args[i:i+n]...)
			i += n - 1
		default:
			n := takeOption(args, i, globals)
			global = append(global, args[i:i+n]...)
			i += n - 1
		}
	}
	out := append([]string{args[0]}, global...)
	out = append(out, name)
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out
}

// flagSpecs maps every name and alias of flags to whether it takes a value.
func flagSpecs(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			m[n] = !isBool
		}
	}
	return m
}

func isOption(a string) bool { return len(a) > 1 && a[0] == '-' }

func optionName(a string) (name string, inline bool) {
	a = strings.TrimLeft(a, "-")
	name, _, inline = strings.Cut(a, "=")
	return name, inline
}

func known(a string, specs map[string]bool) bool {
	n, _ := optionName(a)
	_, ok := specs[n]
	return ok
}

// takeOption returns how many tokens the option at args[i] spans.
func takeOption(args []string, i int, specs map[string]bool) int {
	n, inline := optionName(args[i])
	if specs[n] && !inline && i+1 < len(args) {
		return 2
	}
	return 1
}
