package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
)

// leavesCommands is the report of leaves: how daxstack reaches each leaf.
func leavesCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "leaves",
		Usage: "list the leaves tables use: kind, identity, size, access (dax-sync, dax, page-cache, pread), lost, poison",
		Flags: []cli.Flag{reportFormatFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{"leaves takes no arguments"}
			}
			x := newEnv(c)
			ls, err := x.api.Leaves(x.ctx())
			if err != nil {
				return err
			}
			if x.json() {
				rows := []row{}
				for _, l := range ls {
					rows = append(rows, leafRow(l))
				}
				return printJSON(x.out, "leaf", rows)
			}
			if len(ls) == 0 {
				fmt.Fprintln(x.out, "No leaves found")
				return nil
			}
			printLeaves(x, ls)
			return nil
		},
	}}
}

// leafRow is a leaf as the JSON report shows it. Sizes and poison are in
// 512-byte sectors.
func leafRow(l control.LeafInfo) row {
	r := row{}.with("path", l.Path).with("ref", l.Ref).with("name", l.Name).with("kind", l.Kind).
		with("identity", l.Identity.String()).with("size", l.Size).with("current_size", l.CurrentSize).
		with("access", l.Access).with("access_verified", l.AccessVerified).with("lost", l.Lost).
		with("poison", l.Poison).with("poison_source", l.PoisonSource).with("truncated", l.Truncated).
		with("claimed", l.Claimed).with("read_only", l.ReadOnly).with("devices", l.Devices)
	if l.Error != "" {
		r = r.with("error", l.Error)
	}
	return r
}

// printLeaves prints one line per leaf under a header, columns aligned.
func printLeaves(x *env, ls []control.LeafInfo) {
	w := tabwriter.NewWriter(x.out, 0, 0, 1, ' ', 0)
	fmt.Fprintln(w, "Path\tKind\tSize\tAccess\tLost\tPoison\tDevices\tIdentity")
	for _, l := range ls {
		path, access, lost := l.Path, l.Access, "no"
		if path == "" {
			path = l.Ref
		}
		if !l.AccessVerified && l.Error == "" && access != "none" {
			access += "?" // inferred, not read back from the kernel
		}
		if l.Lost {
			lost = "yes"
		} else if l.Truncated > 0 {
			lost = fmt.Sprintf("shrunk:%d", l.Truncated)
		}
		devs := strings.Join(l.Devices, ",")
		if devs == "" {
			devs = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", path, l.Kind, l.Size, access, lost, l.Poison, devs, l.Identity)
	}
	w.Flush()
}
