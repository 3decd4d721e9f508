package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
)

func reportCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "ls", Usage: "list mapped devices",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "target", Usage: "only devices with a segment of type `TYPE`"},
				&cli.BoolFlag{Name: "tree", Usage: "show devices as a dependency tree"},
				&cli.StringFlag{Name: "options", Aliases: []string{"o"}, Usage: "tree options (ascii, utf, inverted, ...)"},
				reportFormatFlag,
			},
			Action: lsAction,
		},
		{
			Name: "info", Usage: "show device information", ArgsUsage: "[<device>...]",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "columns", Aliases: []string{"c", "C"}, Usage: "report columns instead of Field: value lines"},
				&cli.StringFlag{Name: "options", Aliases: []string{"o"}, Usage: "report `FIELDS` (+ to append to the default)"},
				&cli.BoolFlag{Name: "noheadings", Usage: "no heading line (also: separator ':', no alignment)"},
				&cli.StringFlag{Name: "separator", Usage: "field `SEPARATOR` (no alignment)"},
				&cli.BoolFlag{Name: "nameprefixes", Usage: "print DM_FIELD='value'"},
				&cli.BoolFlag{Name: "unquoted", Usage: "with --nameprefixes, do not quote values"},
				&cli.StringFlag{Name: "sort", Aliases: []string{"O"}, Usage: "order by `FIELDS` (comma-separated; - before a field: descending)"},
				&cli.StringFlag{Name: "select", Aliases: []string{"S"}, Usage: "only devices matching `SELECTION` (libdm's: name=~REGEX || uuid=VALUE && open>0 ...)"},
				reportFormatFlag,
			},
			Action: infoAction,
		},
		{
			Name: "deps", Usage: "show the devices each device uses", ArgsUsage: "[<device>...]",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "options", Aliases: []string{"o"}, Usage: "devno (default), devname or blkdevname"}, reportFormatFlag},
			Action: depsAction,
		},
		{
			Name: "table", Usage: "show tables", ArgsUsage: "[<device>...]",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "concise", Usage: "one line in dmsetup's concise format"},
				&cli.StringFlag{Name: "target", Usage: "only segments of type `TYPE`"},
				&cli.BoolFlag{Name: "inactive", Usage: "the inactive table"},
				&cli.BoolFlag{Name: "showkeys", Hidden: true},
				reportFormatFlag,
			},
			Action: func(c *cli.Context) error { return tableAction(c, false) },
		},
		{
			Name: "status", Usage: "show target status", ArgsUsage: "[<device>...]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "target", Usage: "only segments of type `TYPE`"},
				&cli.BoolFlag{Name: "inactive", Usage: "the inactive table"},
				&cli.BoolFlag{Name: "noflush", Hidden: true},
				reportFormatFlag,
			},
			Action: func(c *cli.Context) error { return tableAction(c, true) },
		},
		{
			Name: "targets", Usage: "list target types",
			Action: func(c *cli.Context) error {
				x := newEnv(c)
				ts, err := x.api.Targets(x.ctx())
				if err != nil {
					return err
				}
				for _, t := range ts {
					fmt.Fprintf(c.App.Writer, "%-16s v%d.%d.%d\n", t.Name, t.Version[0], t.Version[1], t.Version[2])
				}
				return nil
			},
		},
		{
			Name: "version", Usage: "show versions",
			Action: func(c *cli.Context) error {
				x := newEnv(c)
				v, err := x.api.Version(x.ctx())
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Library version:   %s\nDriver version:    %s\n", v.Library, v.Driver)
				return nil
			},
		},
	}
}

// printJSON prints rows as LVM's --reportformat json does:
// {"report":[{"<kind>":[...]}]}.
func printJSON(w io.Writer, kind string, rows any) error {
	b, err := json.MarshalIndent(map[string]any{"report": []map[string]any{{kind: rows}}}, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// devices returns the named devices, or all of them when none are named
// (dmsetup's repeatable commands), and whether output needs name prefixes.
func devices(x *env) ([]control.DeviceInfo, bool, error) {
	if x.c.NArg() == 0 {
		all, err := x.api.List(x.ctx())
		return all, true, err
	}
	var out []control.DeviceInfo
	for _, n := range names(x.c) {
		in, err := x.api.Info(x.ctx(), control.NameReq{Name: n})
		if err != nil {
			return nil, false, err
		}
		out = append(out, in)
	}
	return out, len(out) > 1, nil
}

func devno(major, minor uint32) string { return fmt.Sprintf("%d:%d", major, minor) }

func lsAction(c *cli.Context) error {
	x := newEnv(c)
	all, err := x.api.List(x.ctx())
	if err != nil {
		return err
	}
	if t := c.String("target"); t != "" {
		all = slices.DeleteFunc(all, func(d control.DeviceInfo) bool { return !slices.Contains(d.Types, t) })
	}
	if x.json() {
		rows := []row{}
		for _, d := range all {
			r := row{}.with("name", d.Name).with("major", d.Major).with("minor", d.Minor).with("uuid", d.UUID).with("degraded", d.Degraded() || d.Broken != "")
			if d.Broken != "" {
				r = r.with("broken", d.Broken)
			}
			rows = append(rows, r)
		}
		return printJSON(x.out, "device", rows)
	}
	if len(all) == 0 {
		fmt.Fprintln(x.out, "No devices found")
		return nil
	}
	if c.Bool("tree") {
		return printTree(x.out, all, c.String("options"), x.dm)
	}
	for _, d := range all {
		line := fmt.Sprintf("%s\t(%s)", d.Name, devno(d.Major, d.Minor))
		if c.String("target") != "" {
			line = fmt.Sprintf("%s\t(%d, %d)", d.Name, d.Major, d.Minor)
		}
		switch {
		case x.dm:
		case len(d.Lost) > 0:
			line += "\tdegraded: lost " + strings.Join(d.Lost, ",")
		case len(d.Shrunk) > 0:
			line += "\tdegraded: shrunk " + strings.Join(d.Shrunk, ",")
		}
		if d.Broken != "" && !x.dm {
			line += "\tbroken: stored table does not load"
		}
		fmt.Fprintln(x.out, line)
	}
	return nil
}

// printTree draws `dmsetup ls --tree`: roots are the devices nothing uses;
// children are what they use, leaves shown by device number (or path).
func printTree(w io.Writer, all []control.DeviceInfo, opts string, dm bool) error {
	utf := localeUTF8(os.Getenv)
	inverted := false
	for _, o := range strings.Split(opts, ",") {
		switch strings.TrimSpace(o) {
		case "ascii":
			utf = false
		case "utf":
			utf = true
		case "inverted":
			inverted = true
		case "", "device", "nodevice", "notrunc", "compact", "active", "open", "rw", "uuid", "blkdevname", "vt100":
		default:
			return usagef("Tree option not recognised: %s.", o)
		}
	}
	mid, last, bar, gap := "|-", "`-", "| ", "  "
	if utf {
		mid, last, bar, gap = "├─", "└─", "│ ", "  "
	}
	byName := map[string]control.DeviceInfo{}
	used := map[string]bool{}
	for _, d := range all {
		byName[d.Name] = d
		for _, dep := range d.Deps {
			if dep.Mapped {
				used[dep.Name] = true
			}
		}
	}
	label := func(r control.DevRef) string {
		num := r.Ref
		if r.HasNum {
			num = devno(r.Major, r.Minor)
		}
		s := fmt.Sprintf(" (%s)", num)
		if r.Mapped {
			s = r.Name + s
		}
		if r.Lost && !dm {
			s += " [lost]"
		}
		return s
	}
	children := func(r control.DevRef) []control.DevRef {
		if r.Mapped {
			return byName[r.Name].Deps
		}
		return nil
	}
	if inverted {
		// Leaves at the root, users below.
		users := map[string][]control.DevRef{}
		var roots []control.DevRef
		seen := map[string]bool{}
		for _, d := range all {
			self := control.DevRef{Name: d.Name, Mapped: true, Major: d.Major, Minor: d.Minor, HasNum: true}
			for _, dep := range d.Deps {
				users[dep.Ref] = append(users[dep.Ref], self)
				if !dep.Mapped && !seen[dep.Ref] {
					seen[dep.Ref] = true
					roots = append(roots, dep)
				}
			}
			if len(d.Deps) == 0 {
				roots = append(roots, self)
			}
		}
		children = func(r control.DevRef) []control.DevRef {
			key := r.Ref
			if r.Mapped {
				key = r.Name
			}
			return users[key]
		}
		for _, r := range roots {
			fmt.Fprintln(w, strings.TrimLeft(label(r), " "))
			drawChildren(w, children(r), " ", mid, last, bar, gap, label, children)
		}
		return nil
	}
	for _, d := range all {
		if used[d.Name] {
			continue
		}
		broken := ""
		if d.Broken != "" && !dm {
			broken = " [broken]"
		}
		fmt.Fprintf(w, "%s (%s)%s\n", d.Name, devno(d.Major, d.Minor), broken)
		drawChildren(w, d.Deps, " ", mid, last, bar, gap, label, children)
	}
	return nil
}

// localeUTF8 reports whether the locale's character set is UTF-8, as
// dmsetup decides how to draw trees (nl_langinfo(CODESET) after
// setlocale(LC_ALL, "")): the first of LC_ALL, LC_CTYPE and LANG that is
// set names the locale, and its codeset is what follows the '.' (up to an
// '@'). "C", "POSIX", no locale, or no codeset are ASCII.
func localeUTF8(getenv func(string) string) bool {
	loc := ""
	for _, v := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if loc = getenv(v); loc != "" {
			break
		}
	}
	_, codeset, ok := strings.Cut(loc, ".")
	if !ok {
		return false
	}
	codeset, _, _ = strings.Cut(codeset, "@")
	codeset = strings.ToLower(strings.ReplaceAll(codeset, "-", ""))
	return codeset == "utf8"
}

func drawChildren(w io.Writer, kids []control.DevRef, prefix, mid, last, bar, gap string,
	label func(control.DevRef) string, children func(control.DevRef) []control.DevRef) {
	for i, k := range kids {
		branch, cont := mid, bar
		if i == len(kids)-1 {
			branch, cont = last, gap
		}
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, label(k))
		drawChildren(w, children(k), prefix+cont+" ", mid, last, bar, gap, label, children)
	}
}

func depsAction(c *cli.Context) error {
	x := newEnv(c)
	devs, prefix, err := devices(x)
	if err != nil {
		return err
	}
	mode := c.String("options")
	if mode == "" {
		mode = "devno"
	}
	if mode != "devno" && mode != "devname" && mode != "blkdevname" {
		return usagef("Unrecognised deps option: %s (devno, devname, blkdevname)", mode)
	}
	if x.json() {
		rows := []row{}
		for _, d := range devs {
			deps := []row{}
			for _, r := range d.Deps {
				m := row{}.with("name", r.Name).with("ref", r.Ref).with("mapped", r.Mapped)
				if r.HasNum {
					m = m.with("major", r.Major).with("minor", r.Minor)
				}
				deps = append(deps, m)
			}
			rows = append(rows, row{}.with("device", d.Name).with("deps", deps))
		}
		return printJSON(x.out, "deps", rows)
	}
	for _, d := range devs {
		var parts []string
		for _, r := range d.Deps {
			switch {
			case mode == "devno" && r.HasNum:
				parts = append(parts, fmt.Sprintf("(%d, %d)", r.Major, r.Minor))
			case mode == "devno":
				parts = append(parts, "("+r.Ref+")")
			default:
				parts = append(parts, "("+r.Name+")")
			}
		}
		p := ""
		if prefix {
			p = d.Name + ": "
		}
		fmt.Fprintf(x.out, "%s%d dependencies\t: %s\n", p, len(d.Deps), strings.Join(parts, " "))
	}
	return nil
}

func tableAction(c *cli.Context, status bool) (err error) {
	x := newEnv(c)
	call := x.api.Table
	if status {
		call = x.api.Status
	}
	prefix := c.NArg() != 1
	var devNames []string
	brokenOf := map[string]string{}
	if c.NArg() == 0 {
		all, err := x.api.List(x.ctx())
		if err != nil {
			return err
		}
		for _, d := range all {
			devNames = append(devNames, d.Name)
			brokenOf[d.Name] = d.Broken
		}
	} else {
		devNames = names(c)
	}
	var broken []string
	defer func() {
		// A device whose stored table does not load has no table to
		// show: say so rather than leave it out.
		for _, n := range broken {
			fmt.Fprintf(x.errw, "daxstack: %s: stored table does not load: %s\n", n, brokenOf[n])
		}
		if len(broken) > 0 && err == nil {
			err = errShown{fmt.Errorf("%d devices with a broken table", len(broken))}
		}
	}()
	var tables []control.TableResp
	for _, n := range devNames {
		t, err := call(x.ctx(), control.TableReq{Name: n, Inactive: c.Bool("inactive")})
		if err != nil {
			return err
		}
		if _, known := brokenOf[n]; !known && len(t.Segments) == 0 && !c.Bool("inactive") {
			in, err := x.api.Info(x.ctx(), control.NameReq{Name: n})
			if err != nil {
				return err
			}
			brokenOf[n] = in.Broken
		}
		if brokenOf[n] != "" && !c.Bool("inactive") {
			broken = append(broken, n)
		}
		if tt := c.String("target"); tt != "" {
			t.Segments = slices.DeleteFunc(t.Segments, func(s control.SegmentInfo) bool { return s.Target != tt })
		}
		tables = append(tables, t)
	}
	if x.json() {
		rows := []row{}
		for _, t := range tables {
			for _, s := range t.Segments {
				rows = append(rows, row{}.with("device", t.Name).with("start", s.Start).with("length", s.Length).with("target", s.Target).with("params", s.Params))
			}
		}
		kind := "table"
		if status {
			kind = "status"
		}
		return printJSON(x.out, kind, rows)
	}
	if !status && c.Bool("concise") {
		var devs []string
		for _, t := range tables {
			rw := "rw"
			if t.ReadOnly {
				rw = "ro"
			}
			parts := []string{stack.EscapeConcise(t.Name), stack.EscapeConcise(t.UUID), strconv.FormatUint(uint64(t.Minor), 10), rw}
			for _, s := range t.Segments {
				parts = append(parts, stack.EscapeConcise(stack.FormatLine(s.Start, s.Length, s.Target, s.Params)))
			}
			devs = append(devs, strings.Join(parts, ","))
		}
		fmt.Fprintln(x.out, strings.Join(devs, ";"))
		return nil
	}
	if len(tables) == 0 {
		fmt.Fprintln(x.out, "No devices found")
	}
	for _, t := range tables {
		p := ""
		if prefix {
			p = t.Name + ": "
		}
		for _, s := range t.Segments {
			fmt.Fprintln(x.out, p+stack.FormatLine(s.Start, s.Length, s.Target, s.Params))
		}
	}
	return nil
}
