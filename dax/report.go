package dax

// Report is what a report of leaves (daxstack leaves) shows of one leaf,
// shaped for JSON. Sizes and counts are in 512-byte sectors.
type Report struct {
	Path     string   `json:"path"`
	Ref      string   `json:"ref"`
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Identity Identity `json:"identity"`
	// Size is the size tables were checked against; CurrentSize what the
	// device or file has now (less when it shrank: see Truncated).
	Size        uint64 `json:"size"`
	CurrentSize uint64 `json:"current_size"`
	// Access is how the leaf's bytes are reached: dax-sync, dax,
	// page-cache, pread, or none (lost, closed, or it cannot be opened:
	// Error says why). AccessVerified says it was read back from the
	// kernel, not inferred.
	Access         string `json:"access"`
	AccessVerified bool   `json:"access_verified"`
	Lost           bool   `json:"lost"`
	// Poison counts the bad sectors of the leaf's poison list, from
	// PoisonSource ("sysfs" or "emulated"); Truncated the sectors past
	// its current end.
	Poison       uint64 `json:"poison"`
	PoisonSource string `json:"poison_source"`
	Truncated    uint64 `json:"truncated"`
	Claimed      bool   `json:"claimed"`
	ReadOnly     bool   `json:"read_only"`
	Error        string `json:"error,omitempty"`
}

// Report describes the leaf for a report of leaves. It opens and maps a
// leaf that did no I/O yet, to say truthfully how it is used (Access).
func (l *Leaf) Report() Report {
	r := Report{
		Path: l.path, Ref: l.ref, Name: l.name, ID: l.id, Kind: l.kind, Identity: l.ident,
		Size: l.size, CurrentSize: l.CurrentSize(), Lost: l.Lost(),
		Poison: l.BadBlocks().Sectors(), PoisonSource: l.PoisonSource(),
		Truncated: l.Truncated().Sectors(), Claimed: l.Claimed(),
	}
	access, err := l.Access()
	r.Access = access
	if err != nil {
		r.Error = err.Error()
	} else {
		r.AccessVerified = l.AccessVerified()
	}
	if m := l.m.Load(); m != nil {
		r.ReadOnly = m.ro
	}
	return r
}
