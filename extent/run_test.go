package extent

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRunValid checks the invariants documented on Run.
func TestRunValid(t *testing.T) {
	tests := []struct {
		name string
		r    Run
		want bool
	}{
		{"plain extent", Run{Start: 0, Len: 8, Count: 1}, true},
		{"strided", Run{Start: 8, Len: 8, Stride: 32, Count: 4}, true},
		{"zero length", Run{Start: 0, Len: 0, Count: 1}, false},
		{"zero count", Run{Start: 0, Len: 8, Count: 0}, false},
		{"extent with a stride", Run{Start: 0, Len: 8, Stride: 16, Count: 1}, false},
		{"stride equal to the length", Run{Start: 0, Len: 8, Stride: 8, Count: 4}, false},
		{"stride below the length", Run{Start: 0, Len: 8, Stride: 4, Count: 4}, false},
		{"ends at MaxSector", Run{Start: MaxSector - 8, Len: 8, Count: 1}, true},
		{"ends past MaxSector", Run{Start: MaxSector - 8, Len: 9, Count: 1}, false},
		{"strided, ends at MaxSector", Run{Start: MaxSector - 40, Len: 8, Stride: 16, Count: 3}, true},
		{"strided, ends past MaxSector", Run{Start: MaxSector - 40, Len: 8, Stride: 16, Count: 4}, false},
		{"count times stride overflows", Run{Start: 0, Len: 1, Stride: 1 << 40, Count: 1 << 40}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Valid(); got != tc.want {
				t.Errorf("Valid(%v) = %v, want %v", tc.r, got, tc.want)
			}
		})
	}
}

// TestRunGeometry checks the small accessors against the definition.
func TestRunGeometry(t *testing.T) {
	r := Run{Start: 10, Len: 3, Stride: 8, Count: 4} // 10-12, 18-20, 26-28, 34-36
	if r.Span() != (Extent{10, 27}) || r.End() != 37 || r.Sectors() != 12 || r.Last() != (Extent{34, 3}) {
		t.Errorf("Span %v End %d Sectors %d Last %v", r.Span(), r.End(), r.Sectors(), r.Last())
	}
	for s := uint64(0); s < 40; s++ {
		want := s >= 10 && s < 37 && (s-10)%8 < 3
		if r.Contains(s) != want {
			t.Errorf("Contains(%d) = %v", s, !want)
		}
	}
	if got := r.String(); got != "10+3*4/8" {
		t.Errorf("String() = %q", got)
	}
	if got := ExtentRun(Extent{5, 2}).String(); got != "5+2" {
		t.Errorf("String() = %q", got)
	}
}

// TestJSON checks the wire shape of sets, ndctl's badblock keys extended
// with stride and count, and what decoding refuses.
func TestJSON(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		json string
	}{
		{"empty", Set{}, `[]`},
		{"extents", Of(Extent{300, 4}, Extent{1000, 16}), `[{"offset":300,"length":4},{"offset":1000,"length":16}]`},
		{"a stripe", FromRuns(Run{8, 8, 32, 1 << 28}), `[{"offset":8,"length":8,"stride":32,"count":268435456}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.set)
			if err != nil || string(b) != tc.json {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.json)
			}
			var back Set
			if err := json.Unmarshal(b, &back); err != nil || !back.Equal(tc.set) {
				t.Fatalf("Unmarshal = %v, %v", back, err)
			}
		})
	}
	decode := []struct {
		name, json string
		want       string // the set decoded, or "error: <substring>"
	}{
		{"overlapping runs are merged", `[{"offset":0,"length":8},{"offset":4,"length":8}]`, "{0+12}"},
		{"stride equal to the length is an extent", `[{"offset":0,"length":8,"stride":8,"count":3}]`, "{0+24}"},
		{"count 1 needs no stride", `[{"offset":5,"length":2,"count":1}]`, "{5+2}"},
		{"count without stride", `[{"offset":0,"length":8,"count":3}]`, "error: has no stride"},
		{"zero length", `[{"offset":0,"length":0}]`, "error: invalid run"},
		{"stride below the length", `[{"offset":0,"length":8,"stride":4,"count":3}]`, "error: invalid run"},
		{"past MaxSector", `[{"offset":4611686018427387900,"length":8}]`, "error: invalid run"},
		{"not an array", `{"offset":0}`, "error: cannot unmarshal"},
	}
	for _, tc := range decode {
		t.Run(tc.name, func(t *testing.T) {
			var s Set
			err := json.Unmarshal([]byte(tc.json), &s)
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Unmarshal(%s) = %v, %v; want error containing %q", tc.json, s, err, want)
				}
				return
			}
			if err != nil || s.String() != tc.want {
				t.Fatalf("Unmarshal(%s) = %v, %v; want %s", tc.json, s, err, tc.want)
			}
		})
	}
}
