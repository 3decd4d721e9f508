package control

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/nbdleaf"
)

// LeafInfo is one leaf of the report of leaves (daxstack leaves): what
// dax says of it (dax.Report: path, kind, identity, sizes, access, lost,
// poison) and the mapped devices whose tables use it.
type LeafInfo struct {
	dax.Report
	Devices []string `json:"devices"`
}

// Leaves reports every leaf the engine holds (every leaf a table uses,
// lost ones included), sorted by reference. A leaf that did no I/O yet is
// opened and mapped for it, so that its access mode is the kernel's
// answer, not a guess.
func (e *Engine) Leaves(context.Context) ([]LeafInfo, error) {
	return report(e, func() ([]LeafInfo, error) {
		out := []LeafInfo{}
		for _, d := range e.pool.Leaves() {
			var in LeafInfo
			switch l := e.daxLeaf(d).(type) {
			case *dax.Leaf:
				if !l.Lost() {
					l.Recheck()
				}
				in = LeafInfo{Report: l.Report(), Devices: []string{}}
			case *nbdleaf.Leaf:
				in = LeafInfo{Report: nbdReport(l), Devices: []string{}}
			default:
				continue
			}
			if rec, ok := e.recs[d.Leaf().ID()]; ok {
				// A lost leaf's stand-in knows only its name: say what was
				// recorded.
				if in.Identity.Kind == "" && len(rec.Identity) > 0 {
					json.Unmarshal(rec.Identity, &in.Identity)
				}
				if in.Path == "" {
					in.Path = rec.Path
				}
			}
			for _, u := range e.pool.Users(d) {
				in.Devices = append(in.Devices, u.Name())
			}
			slices.Sort(in.Devices)
			out = append(out, in)
		}
		return out, nil
	})
}
