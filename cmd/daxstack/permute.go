package main

import (
	"fmt"
	"slices"
	"sort"
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
//
// Options are read as getopt_long reads them: a long option may be
// abbreviated to any unambiguous prefix, a short option's value may be
// attached (-oname). An option of dmsetup's that the verb does not define
// is dropped (see dmopts.go) or refused; one that neither knows is
// refused. A verb that does not exist is refused: it is the one error
// urfave/cli would let pass with exit status 0.
func permute(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	globals := globalSpecs(app)
	// Find the verb: the first argument that is not an option or the
	// value of one.
	i := 1
	for i < len(args) && isOption(args[i]) && args[i] != "--" {
		o, err := resolve(args, i, nil, globals)
		if err != nil {
			return nil, err
		}
		i += o.span
	}
	verbAt := i
	if verbAt < len(args) && args[verbAt] == "--" {
		verbAt++
	}
	if verbAt >= len(args) {
		return args, nil // no verb: urfave/cli prints the help
	}
	name := args[verbAt]
	cmd := app.Command(name)
	if cmd == nil {
		if name == "help" || name == "h" {
			return args, nil
		}
		return nil, unknownVerb(app, name)
	}
	specs := flagSpecs(cmd.Flags)
	specs["help"], specs["h"] = false, false
	var global, flags, pos []string
	for i = 1; i < len(args); {
		a := args[i]
		switch {
		case i == verbAt:
			i++
			continue
		case a == "--" && i < verbAt:
			i++
			continue
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
			continue
		case !isOption(a):
			pos = append(pos, a)
			i++
			continue
		}
		if i > verbAt {
			if parts := splitBundle(a, specs, globals); parts != nil {
				args = slices.Concat(args[:i:i], parts, args[i+1:])
				a = args[i]
			}
		}
		o, err := resolve(args, i, specs, globals)
		if err != nil {
			return nil, err
		}
		if o.global {
			global = append(global, o.tokens...)
		} else {
			flags = append(flags, o.tokens...)
		}
		i += o.span
	}
	out := append([]string{args[0]}, global...)
	out = append(out, name)
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out, nil
}

// globalSpecs are the options accepted before or after any verb: the
// app's flags (none on the command line when invoked as dmsetup: they
// are daxstack's, settable by environment only) and --help, --version.
func globalSpecs(app *cli.App) map[string]bool {
	g := map[string]bool{}
	if !isDmsetup(app) {
		g = flagSpecs(app.Flags)
	}
	g["help"], g["h"], g["version"] = false, false, false
	return g
}

// unknownVerb is the error for a verb that does not exist.
func unknownVerb(app *cli.App, name string) error {
	if isDmsetup(app) {
		return optionError{msg: "Unknown command", bare: true} // dmsetup's one line
	}
	return optionError{msg: fmt.Sprintf("unknown command %q (see '%s help')", name, app.Name)}
}

// optionError is a command line refused before any verb runs, printed
// as getopt prints its errors: "<program>: <msg>".
type optionError struct {
	msg  string
	bare bool // printed without the program's name
}

func (e optionError) Error() string { return e.msg }

func optionf(format string, a ...any) error { return optionError{msg: fmt.Sprintf(format, a...)} }

// resolved is one option of a command line, rewritten for urfave/cli.
type resolved struct {
	tokens []string // what to pass on: nothing for a dropped option
	span   int      // tokens it took from the command line
	global bool     // a global option (before the verb)
}

// resolve reads the option at args[i]: a flag of the verb (specs; nil
// before the verb), a global flag, or one of dmsetup's.
func resolve(args []string, i int, specs, globals map[string]bool) (resolved, error) {
	a := args[i]
	long := strings.HasPrefix(a, "--")
	body := strings.TrimLeft(a, "-")
	name, val, inline := strings.Cut(body, "=")
	if !long && !inline {
		// -oname: a short option with its value attached.
		if _, known := lookupExact(name, specs, globals); !known && len(name) > 1 {
			if takes, ok := shortTakesValue(name[:1], specs, globals); ok && takes {
				name, val, inline = name[:1], name[1:], true
			}
		}
	}
	canon, where, err := canonical(name, long, specs, globals)
	if err != nil {
		return resolved{}, err
	}
	var takes bool
	switch where {
	case inVerb:
		takes = specs[canon]
	case inGlobal:
		takes = globals[canon]
	case inDmsetup:
		takes = dmLongOpts[canon].value
		if !long && len(name) == 1 {
			takes = dmShortValue(name)
		}
	}
	span := 1
	if takes && !inline {
		if i+1 >= len(args) {
			return resolved{}, optionf("option '%s' requires an argument", a)
		}
		val, span = args[i+1], 2
	}
	if !takes && inline {
		return resolved{}, optionf("option '--%s' doesn't allow an argument", canon)
	}
	if where == inDmsetup {
		if why, ok := dmRefused[canon]; ok {
			return resolved{}, optionf("--%s: %s", canon, why)
		}
		if canon == "manglename" {
			switch strings.ToLower(val) {
			case "none", "auto", "hex":
			default:
				return resolved{}, optionf("Unknown name mangling mode.")
			}
		}
		return resolved{span: span}, nil // accepted, no meaning here
	}
	tok := "--" + canon
	if len(canon) == 1 {
		tok = "-" + canon
	}
	r := resolved{span: span, global: where == inGlobal}
	if takes {
		r.tokens = []string{tok, val}
	} else {
		r.tokens = []string{tok}
	}
	return r, nil
}

type origin int

const (
	inVerb origin = iota
	inGlobal
	inDmsetup
)

func lookupExact(name string, specs, globals map[string]bool) (origin, bool) {
	if _, ok := specs[name]; ok {
		return inVerb, true
	}
	if _, ok := globals[name]; ok {
		return inGlobal, true
	}
	return 0, false
}

func shortTakesValue(letter string, specs, globals map[string]bool) (bool, bool) {
	if w, ok := lookupExact(letter, specs, globals); ok {
		if w == inVerb {
			return specs[letter], true
		}
		return globals[letter], true
	}
	if l, ok := dmShortOpts[letter]; ok {
		if _, defined := specs[l]; defined {
			return specs[l], true
		}
		return dmShortValue(letter), true
	}
	return false, false
}

// canonical names an option: an exact name of the verb, a global or
// dmsetup; a short letter of dmsetup's; or, for a long option, the one
// name of them all it is a prefix of.
func canonical(name string, long bool, specs, globals map[string]bool) (string, origin, error) {
	if w, ok := lookupExact(name, specs, globals); ok {
		return name, w, nil
	}
	if !long && len(name) == 1 {
		if l, ok := dmShortOpts[name]; ok {
			if _, defined := specs[l]; defined {
				return l, inVerb, nil
			}
			return l, inDmsetup, nil
		}
		return "", 0, optionf("invalid option -- '%s'", name)
	}
	if _, ok := dmLongOpts[name]; ok {
		if _, defined := specs[name]; defined {
			return name, inVerb, nil
		}
		return name, inDmsetup, nil
	}
	// A prefix of exactly one name (names the verb and dmsetup share
	// count once).
	type cand struct {
		name string
		w    origin
	}
	seen := map[string]cand{}
	add := func(n string, w origin) {
		if len(n) > 1 && strings.HasPrefix(n, name) {
			if _, dup := seen[n]; !dup {
				seen[n] = cand{n, w}
			}
		}
	}
	for n := range specs {
		add(n, inVerb)
	}
	for n := range globals {
		add(n, inGlobal)
	}
	for n := range dmLongOpts {
		add(n, inDmsetup)
	}
	switch len(seen) {
	case 1:
		for _, c := range seen {
			return c.name, c.w, nil
		}
	case 0:
		dash := "--"
		if !long {
			dash = "-"
		}
		return "", 0, optionf("unrecognized option '%s%s'", dash, name)
	}
	var all []string
	for n := range seen {
		all = append(all, "--"+n)
	}
	sort.Strings(all)
	return "", 0, optionf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(all, " "))
}

// splitBundle splits "-abc", short options given together, into "-a"
// "-bc" when it names no option itself and -a takes no value (getopt's
// bundling; a value-taking letter takes the rest, see resolve).
func splitBundle(a string, specs, globals map[string]bool) []string {
	if strings.HasPrefix(a, "--") || len(a) < 3 || strings.Contains(a, "=") {
		return nil
	}
	if _, known := lookupExact(a[1:], specs, globals); known {
		return nil
	}
	takes, ok := shortTakesValue(a[1:2], specs, globals)
	if !ok || takes {
		return nil
	}
	return []string{a[:2], "-" + a[2:]}
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
