package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/internal/dmselect"
)

// info: dmsetup's long form and its report columns.

func infoAction(c *cli.Context) error {
	x := newEnv(c)
	devs, _, err := devices(x)
	if err != nil {
		return err
	}
	fields, err := reportFields(c.String("options"), x.dm)
	if err != nil {
		return err
	}
	none := len(devs) == 0
	if devs, err = selectAndSort(devs, c.String("select"), c.String("sort"), x.dm); err != nil {
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
	if none {
		fmt.Fprintln(x.out, "No devices found")
		return nil
	}
	if !c.Bool("columns") && !c.IsSet("options") && !c.Bool("noheadings") {
		for _, d := range devs {
			printInfoLong(x.out, d, x.dm)
		}
		return nil
	}
	return printColumns(x.out, fields, devs, c)
}

// selectAndSort keeps the devices that pass -S/--select and orders them
// by -O/--sort, as libdm's report engine (package dmselect).
func selectAndSort(devs []control.DeviceInfo, sel, sortSpec string, dm bool) ([]control.DeviceInfo, error) {
	if sel == "" && sortSpec == "" {
		return devs, nil
	}
	var fs []dmselect.Field
	for _, f := range infoFields {
		if dm && f.own() {
			continue
		}
		k := dmselect.String
		if f.numeric {
			k = dmselect.Number
		}
		fs = append(fs, dmselect.Field{Name: f.name, Kind: k})
	}
	s, err := dmselect.Parse(sel, fs)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	keys, err := dmselect.ParseSort(sortSpec, fs)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	var out []control.DeviceInfo
	for _, d := range devs {
		if s.Match(selectRow(d)) {
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b control.DeviceInfo) int {
		return dmselect.Compare(keys, selectRow(a), selectRow(b))
	})
	return out, nil
}

// selectRow gives a device's value of any info field to dmselect.
func selectRow(d control.DeviceInfo) dmselect.Row {
	return func(name string) dmselect.Value {
		i := slices.IndexFunc(infoFields, func(f reportField) bool { return strings.EqualFold(f.name, name) })
		if i < 0 {
			return dmselect.Value{}
		}
		f := infoFields[i]
		v := dmselect.Value{S: f.text(d)}
		if f.numeric {
			v.N, _ = strconv.ParseUint(v.S, 10, 64)
		}
		return v
	}
}

// printInfoLong prints dmsetup's long `info`, followed by an empty line.
// daxstack's own lines (lost leaves, bad sectors, ...) are left out as
// dmsetup (dm).
func printInfoLong(w io.Writer, d control.DeviceInfo, dm bool) {
	state := "ACTIVE"
	if d.Suspended {
		state = "SUSPENDED"
	}
	if d.ReadOnly {
		state += " (READ-ONLY)"
	}
	if (d.Degraded() || d.Broken != "") && !dm {
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
	if d.Holder != "" && !dm {
		fmt.Fprintf(w, "Holder:            %s\n", d.Holder)
	}
	if len(d.Lost) > 0 && !dm {
		fmt.Fprintf(w, "Lost leaves:       %s\n", strings.Join(d.Lost, " "))
	}
	if len(d.Shrunk) > 0 && !dm {
		fmt.Fprintf(w, "Shrunk leaves:     %s\n", strings.Join(d.Shrunk, " "))
	}
	if d.Bad > 0 && !dm {
		fmt.Fprintf(w, "Bad sectors:       %d\n", d.Bad)
	}
	if d.Broken != "" && !dm {
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

// dmsetup's minimum widths of its fields, and the fields that are
// daxstack's own (not offered when invoked as dmsetup).
var (
	fieldWidths = map[string]int{
		"name": 16, "major": 3, "minor": 3, "attr": 4, "open": 4, "segments": 4, "events": 6,
		"uuid": 32, "devno": 5, "tables_loaded": 6, "suspended": 9, "readonly": 9,
		"device_count": 5, "devs_used": 16, "devnos_used": 16,
	}
	ownFields = []string{"size", "bad_sectors", "health", "holder", "blkdev"}
)

// width is the field's minimum width in an aligned report.
func (f reportField) width() int { return max(fieldWidths[f.name], len(f.heading)) }

// own reports whether the field is daxstack's, not dmsetup's.
func (f reportField) own() bool { return slices.Contains(ownFields, f.name) }

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
		case d.Degraded():
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

// reportFields parses -o: fields separated by commas, or "+" and fields
// to add to the default ones. dm leaves out daxstack's own fields.
func reportFields(opt string, dm bool) ([]reportField, error) {
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
		i := slices.IndexFunc(infoFields, func(f reportField) bool { return f.name == n && !(dm && f.own()) })
		if i < 0 {
			var known []string
			for _, f := range infoFields {
				if !(dm && f.own()) {
					known = append(known, f.name)
				}
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
	// libdm's alignment: each column as wide as its field's minimum, its
	// heading and its widest value; numbers to the right, strings and
	// headings to the left, every column padded (the last one too).
	width := make([]int, len(fields))
	if aligned {
		for i, f := range fields {
			width[i] = f.width()
			if !headings {
				width[i] = 0
			}
			for _, r := range rows {
				width[i] = max(width[i], len(r[i]))
			}
		}
	}
	line := func(cells []string, heading bool) {
		out := make([]string, len(cells))
		for i, s := range cells {
			switch {
			case !aligned:
				out[i] = s
			case fields[i].numeric && !heading:
				out[i] = fmt.Sprintf("%*s", width[i], s)
			default:
				out[i] = fmt.Sprintf("%-*s", width[i], s)
			}
		}
		fmt.Fprintln(w, strings.Join(out, sep))
	}
	if headings && len(rows) > 0 { // libdm prints no headings over no rows
		var h []string
		for _, f := range fields {
			h = append(h, f.heading)
		}
		line(h, true)
	}
	for _, r := range rows {
		line(r, false)
	}
	return nil
}
