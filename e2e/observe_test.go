package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// lsRow is one device of `ls --reportformat json`.
type lsRow struct {
	Name     string `json:"name"`
	Major    uint32 `json:"major"`
	Minor    uint32 `json:"minor"`
	UUID     string `json:"uuid"`
	Degraded bool   `json:"degraded"`
}

// report decodes LVM's JSON report shape, {"report":[{"<kind>":[...]}]},
// insisting on exactly that shape.
func report[T any](out, kind string) ([]T, error) {
	var top map[string][]map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("report is not JSON: %v\n%s", err, out)
	}
	if len(top) != 1 || len(top["report"]) != 1 || len(top["report"][0]) != 1 || top["report"][0][kind] == nil {
		return nil, fmt.Errorf("report is not {\"report\":[{%q:[...]}]}:\n%s", kind, out)
	}
	var rows []T
	d := json.NewDecoder(bytes.NewReader(top["report"][0][kind]))
	d.DisallowUnknownFields()
	if err := d.Decode(&rows); err != nil {
		return nil, fmt.Errorf("%s rows: %v\n%s", kind, err, out)
	}
	return rows, nil
}

// obsDev is what ls and info report about a device.
type obsDev struct {
	Name     string `json:"name"`
	Minor    uint32 `json:"minor"`
	UUID     string `json:"uuid"`
	Degraded bool   `json:"degraded"`
	Attr     string `json:"attr"`
	Size     uint64 `json:"size"`
	Bad      uint64 `json:"bad_sectors"`
	Health   string `json:"health"`
}

// obsRow is a table segment as `table --reportformat json` reports it.
type obsRow struct {
	Device string `json:"device"`
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
	Target string `json:"target"`
	Params string `json:"params"`
}

// observed is the state the binary reports.
type observed struct {
	Devs     []obsDev
	Active   []obsRow
	Inactive []obsRow
	LeafBad  map[string][]uint64 // bad sectors of the leaves asked for
}

// infoFields are the info fields observe asks for.
const infoFields = "name,minor,uuid,attr,size,bad_sectors,health"

// observe reads the state through the binary: ls (the database opens),
// info (every device, with its health: "broken" would mean a stored table
// that no longer loads), table and table --inactive for every device
// (each exits 0 only if every device's table could be read), and the
// badblocks of the given leaves.
func (s *sandbox) observe(leaves []string) (observed, error) {
	var o observed
	run := func(args ...string) (string, error) {
		r := s.runKill(-1, args...)
		if r.code != 0 {
			return "", fmt.Errorf("daxstack %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout, nil
	}
	out, err := run("ls", "--reportformat", "json")
	if err != nil {
		return o, err
	}
	ls, err := report[lsRow](out, "device")
	if err != nil {
		return o, err
	}
	if out, err = run("info", "--reportformat", "json", "-o", infoFields); err != nil {
		return o, err
	}
	info, err := report[obsDev](out, "info")
	if err != nil {
		return o, err
	}
	if len(ls) != len(info) {
		return o, fmt.Errorf("ls lists %d devices, info %d", len(ls), len(info))
	}
	for i, l := range ls {
		if l.Major != 0 || l.Name != info[i].Name || l.Minor != info[i].Minor || l.UUID != info[i].UUID {
			return o, fmt.Errorf("ls says %+v, info says %+v", l, info[i])
		}
		info[i].Degraded = l.Degraded
	}
	o.Devs = info
	for _, inactive := range []bool{false, true} {
		args := []string{"table", "--reportformat", "json"}
		if inactive {
			args = append(args, "--inactive")
		}
		if out, err = run(args...); err != nil {
			return o, err
		}
		rows, err := report[obsRow](out, "table")
		if err != nil {
			return o, err
		}
		if inactive {
			o.Inactive = rows
		} else {
			o.Active = rows
		}
	}
	o.LeafBad = map[string][]uint64{}
	for _, l := range leaves {
		if out, err = run("badblocks", l, "--reportformat", "json"); err != nil {
			return o, err
		}
		rows, err := report[rangeRow](out, "badblocks")
		if err != nil {
			return o, err
		}
		o.LeafBad[l] = rowSectors(rows, l)
	}
	return o, nil
}

// rangeRow is an element of an rmap or badblocks report.
type rangeRow struct {
	Device string `json:"device"`
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
	Stride uint64 `json:"stride,omitempty"`
	Count  uint64 `json:"count,omitempty"`
}

// rowSectors expands the rows of one device into its sorted sectors.
func rowSectors(rows []rangeRow, device string) []uint64 {
	var out []uint64
	for _, r := range rows {
		if r.Device != device {
			continue
		}
		n := max(r.Count, 1)
		for i := range n {
			for k := range r.Length {
				out = append(out, r.Offset+i*r.Stride+k)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// expect is what observe should see if the database holds m.
func (m *model) expect(leaves []string) observed {
	o := observed{LeafBad: map[string][]uint64{}}
	memo := map[int][]bool{}
	for _, d := range m.sorted() {
		var bad uint64
		for _, b := range m.bad(d.id, memo) {
			if b {
				bad++
			}
		}
		attr := []byte("---w")
		if d.active != nil {
			attr[0] = 'L'
		}
		if d.inactive != nil {
			attr[1] = 'I'
		}
		if d.suspended {
			attr[2] = 's'
		}
		health := "ok"
		if bad > 0 {
			health = "bad"
		}
		o.Devs = append(o.Devs, obsDev{Name: d.name, Minor: d.minor, UUID: d.uuid, Attr: string(attr), Size: d.active.size(), Bad: bad, Health: health})
		for _, s := range d.active {
			o.Active = append(o.Active, obsRow{Device: d.name, Start: s.start, Length: s.n, Target: s.typ, Params: m.params(s)})
		}
		for _, s := range d.inactive {
			o.Inactive = append(o.Inactive, obsRow{Device: d.name, Start: s.start, Length: s.n, Target: s.typ, Params: m.params(s)})
		}
	}
	for _, l := range leaves {
		i := slices.Index(m.leaves, l)
		var secs []uint64
		for sec, p := range m.poison[i] {
			if p {
				secs = append(secs, uint64(sec))
			}
		}
		o.LeafBad[l] = secs
	}
	return o
}

// same reports whether two observations agree (nil and empty alike).
func (o observed) same(p observed) bool { return o.norm() == p.norm() }

func (o observed) norm() string {
	b, _ := json.MarshalIndent(o.normStruct(), "", " ")
	return string(b)
}

func (o observed) normStruct() any {
	nilIfEmpty := func(r []obsRow) []obsRow {
		if len(r) == 0 {
			return nil
		}
		return r
	}
	devs := o.Devs
	if len(devs) == 0 {
		devs = nil
	}
	leaves := map[string][]uint64{}
	for k, v := range o.LeafBad {
		if len(v) > 0 {
			leaves[k] = v
		}
	}
	return struct {
		Devs     []obsDev
		Active   []obsRow
		Inactive []obsRow
		LeafBad  map[string][]uint64
	}{devs, nilIfEmpty(o.Active), nilIfEmpty(o.Inactive), leaves}
}

// diff lists the lines where o differs from want, for failure messages.
func (o observed) diff(want observed) string {
	gl, wl := strings.Split(o.norm(), "\n"), strings.Split(want.norm(), "\n")
	var b strings.Builder
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var x, y string
		if i < len(gl) {
			x = gl[i]
		}
		if i < len(wl) {
			y = wl[i]
		}
		if x != y {
			fmt.Fprintf(&b, "  line %d: got %s, want %s\n", i+1, strings.TrimSpace(x), strings.TrimSpace(y))
		}
	}
	return b.String()
}
