package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
)

// info: dmsetup's long form and its report columns.

func infoAction(c *cli.Context) error {
	x := newEnv(c)
	devs, _, err := devices(x)
	if err != nil {
		return err
	}
	fields, err := reportFields(c.String("options"))
	if err != nil {
		return err
	}
	if x.json() {
		rows := []row{}
		for _, d := range devs {
			var r row
			for _, f := range fields {
				r = r.with(f.name, f.json(d))
			}
			rows = append(rows, r)
		}
		return printJSON(x.out, "info", rows)
	}
	if !c.Bool("columns") && !c.IsSet("options") && !c.Bool("noheadings") {
		if len(devs) == 0 {
			fmt.Fprintln(x.out, "No devices found")
		}
		for _, d := range devs {
			printInfoLong(x.out, d)
		}
		return nil
	}
	return printColumns(x.out, fields, devs, c)
}

// printInfoLong prints dmsetup's long `info`, followed by an empty line.
func printInfoLong(w io.Writer, d control.DeviceInfo) {
	state := "ACTIVE"
	if d.Suspended {
		state = "SUSPENDED"
	}
	if d.ReadOnly {
		state += " (READ-ONLY)"
	}
	if len(d.Lost) > 0 || d.Broken != "" {
		state += " (DEGRADED)"
	}
	tables := "None"
	switch {
	case d.Live && d.Inactive:
		tables = "LIVE & INACTIVE"
	case d.Live:
		tables = "LIVE"
	case d.Inactive:
		tables = "INACTIVE"
	}
	fmt.Fprintf(w, "Name:              %s\n", d.Name)
	fmt.Fprintf(w, "State:             %s\n", state)
	fmt.Fprintf(w, "Read Ahead:        %d\n", 256)
	fmt.Fprintf(w, "Tables present:    %s\n", tables)
	fmt.Fprintf(w, "Open count:        %d\n", d.Open)
	fmt.Fprintf(w, "Event number:      %d\n", d.Events)
	fmt.Fprintf(w, "Major, minor:      %d, %d\n", d.Major, d.Minor)
	fmt.Fprintf(w, "Number of targets: %d\n", d.Targets)
	if d.Holder != "" {
		fmt.Fprintf(w, "Holder:            %s\n", d.Holder)
	}
	if len(d.Lost) > 0 {
		fmt.Fprintf(w, "Lost leaves:       %s\n", strings.Join(d.Lost, " "))
	}
	if d.Bad > 0 {
		fmt.Fprintf(w, "Bad sectors:       %d\n", d.Bad)
	}
	if d.Broken != "" {
		fmt.Fprintf(w, "Stored table:      does not load: %s\n", d.Broken)
	}
	if d.UUID != "" {
		fmt.Fprintf(w, "UUID: %s\n", d.UUID)
	}
	fmt.Fprintln(w)
}

// reportField is one column of `info -c`.
type reportField struct {
	name, heading string
	numeric       bool
	value         func(control.DeviceInfo) any
}

func (f reportField) text(d control.DeviceInfo) string { return fmt.Sprint(f.value(d)) }
func (f reportField) json(d control.DeviceInfo) any    { return f.value(d) }

var infoFields = []reportField{
	{"name", "Name", false, func(d control.DeviceInfo) any { return d.Name }},
	{"major", "Maj", true, func(d control.DeviceInfo) any { return d.Major }},
	{"minor", "Min", true, func(d control.DeviceInfo) any { return d.Minor }},
	{"attr", "Stat", false, attr},
	{"open", "Open", true, func(d control.DeviceInfo) any { return d.Open }},
	{"segments", "Targ", true, func(d control.DeviceInfo) any { return d.Targets }},
	{"events", "Event", true, func(d control.DeviceInfo) any { return d.Events }},
	{"uuid", "UUID", false, func(d control.DeviceInfo) any { return d.UUID }},
	{"devno", "DevNo", false, func(d control.DeviceInfo) any { return devno(d.Major, d.Minor) }},
	{"tables_loaded", "Tables", false, func(d control.DeviceInfo) any {
		switch {
		case d.Live && d.Inactive:
			return "Both"
		case d.Live:
			return "Live"
		case d.Inactive:
			return "Inactive"
		}
		return "None"
	}},
	{"suspended", "Suspended", false, func(d control.DeviceInfo) any {
		if d.Suspended {
			return "Suspended"
		}
		return "Active"
	}},
	{"readonly", "Read-only", false, func(d control.DeviceInfo) any {
		if d.ReadOnly {
			return "Read-only"
		}
		return "Writeable"
	}},
	{"device_count", "#Devs", true, func(d control.DeviceInfo) any { return len(d.Deps) }},
	{"devs_used", "DevNamesUsed", false, func(d control.DeviceInfo) any {
		var s []string
		for _, r := range d.Deps {
			s = append(s, r.Name)
		}
		return strings.Join(s, ",")
	}},
	{"devnos_used", "DevNosUsed", false, func(d control.DeviceInfo) any {
		var s []string
		for _, r := range d.Deps {
			if r.HasNum {
				s = append(s, devno(r.Major, r.Minor))
			} else {
				s = append(s, r.Ref)
			}
		}
		return strings.Join(s, ",")
	}},
	{"size", "Size", true, func(d control.DeviceInfo) any { return d.Size }},
	{"bad_sectors", "BadSect", true, func(d control.DeviceInfo) any { return d.Bad }},
	{"health", "Health", false, func(d control.DeviceInfo) any {
		switch {
		case d.Broken != "":
			return "broken"
		case len(d.Lost) > 0:
			return "degraded"
		case len(d.Conditions) > 0:
			return strings.Join(d.Conditions, ",") // a target's word for how it behaves now ("down")
		case d.Bad > 0:
			return "bad"
		}
		return "ok"
	}},
	{"holder", "Holder", false, func(d control.DeviceInfo) any { return d.Holder }},
	{"blkdev", "BlkDev", false, func(d control.DeviceInfo) any { return d.BlockDev }},
}

// attr is dmsetup's 4-character Stat column: live table, inactive table,
// suspended, read-only/writeable.
func attr(d control.DeviceInfo) any {
	b := []byte("----")
	if d.Live {
		b[0] = 'L'
	}
	if d.Inactive {
		b[1] = 'I'
	}
	if d.Suspended {
		b[2] = 's'
	}
	b[3] = 'w'
	if d.ReadOnly {
		b[3] = 'r'
	}
	return string(b)
}

const defaultInfoFields = "name,major,minor,attr,open,segments,events,uuid"

func reportFields(opt string) ([]reportField, error) {
	spec := defaultInfoFields
	switch {
	case strings.HasPrefix(opt, "+"):
		spec += "," + opt[1:]
	case opt != "":
		spec = opt
	}
	var out []reportField
	for _, n := range strings.Split(spec, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(infoFields, func(f reportField) bool { return f.name == n })
		if i < 0 {
			var known []string
			for _, f := range infoFields {
				known = append(known, f.name)
			}
			return nil, usagef("Unrecognised field: %s (known: %s)", n, strings.Join(known, ","))
		}
		out = append(out, infoFields[i])
	}
	return out, nil
}

// printColumns prints the `info -c` report: aligned columns with a
// heading, or with --noheadings (':' separated, unaligned, as dmsetup),
// --separator, or --nameprefixes.
func printColumns(w io.Writer, fields []reportField, devs []control.DeviceInfo, c *cli.Context) error {
	sep, aligned, headings := " ", true, true
	if c.Bool("noheadings") {
		sep, aligned, headings = ":", false, false
	}
	if c.IsSet("separator") {
		sep, aligned = c.String("separator"), false
	}
	if c.Bool("nameprefixes") {
		for _, d := range devs {
			var parts []string
			for _, f := range fields {
				v := f.text(d)
				if !c.Bool("unquoted") {
					v = "'" + v + "'"
				}
				parts = append(parts, "DM_"+strings.ToUpper(f.name)+"="+v)
			}
			fmt.Fprintln(w, strings.Join(parts, sep))
		}
		return nil
	}
	rows := [][]string{}
	for _, d := range devs {
		var row []string
		for _, f := range fields {
			row = append(row, f.text(d))
		}
		rows = append(rows, row)
	}
	width := make([]int, len(fields))
	if aligned {
		for i, f := range fields {
			width[i] = len(f.heading)
			for _, r := range rows {
				width[i] = max(width[i], len(r[i]))
			}
		}
	}
	line := func(cells []string) {
		out := make([]string, len(cells))
		for i, s := range cells {
			switch {
			case !aligned:
				out[i] = s
			case fields[i].numeric:
				out[i] = fmt.Sprintf("%*s", width[i], s)
			case i == len(cells)-1:
				out[i] = s
			default:
				out[i] = fmt.Sprintf("%-*s", width[i], s)
			}
		}
		fmt.Fprintln(w, strings.Join(out, sep))
	}
	if headings {
		var h []string
		for _, f := range fields {
			h = append(h, f.heading)
		}
		line(h)
	}
	for _, r := range rows {
		line(r)
	}
	return nil
}
