package extent

import (
	"encoding/json"
	"fmt"
)

// runJSON is the wire shape of a Run in daxstack's reports and events:
// offsets and lengths in sectors, with stride and count only for strided
// runs (ndctl's badblocks keys, extended).
type runJSON struct {
	Offset uint64  `json:"offset"`
	Length uint64  `json:"length"`
	Stride *uint64 `json:"stride,omitempty"`
	Count  *uint64 `json:"count,omitempty"`
}

// MarshalJSON encodes r as {"offset":S,"length":L} or, for a strided run,
// {"offset":S,"length":L,"stride":T,"count":N}.
func (r Run) MarshalJSON() ([]byte, error) {
	j := runJSON{Offset: r.Start, Length: r.Len}
	if r.Count > 1 {
		j.Stride, j.Count = &r.Stride, &r.Count
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the shape MarshalJSON writes and checks the run.
func (r *Run) UnmarshalJSON(b []byte) error {
	var j runJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	v := Run{Start: j.Offset, Len: j.Length, Count: 1}
	if j.Count != nil {
		v.Count = *j.Count
		if v.Count > 1 {
			if j.Stride == nil {
				return fmt.Errorf("extent: run with count %d has no stride", v.Count)
			}
			v.Stride = *j.Stride
		}
	}
	v = v.canon()
	if !v.Valid() {
		return fmt.Errorf("extent: invalid run offset=%d length=%d stride=%d count=%d", j.Offset, j.Length, v.Stride, v.Count)
	}
	*r = v
	return nil
}

// MarshalJSON encodes s as the array of its runs.
func (s Set) MarshalJSON() ([]byte, error) {
	if s.runs == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.runs)
}

// UnmarshalJSON decodes an array of runs, which may overlap.
func (s *Set) UnmarshalJSON(b []byte) error {
	var runs []Run
	if err := json.Unmarshal(b, &runs); err != nil {
		return err
	}
	*s = FromRuns(runs...)
	return nil
}
