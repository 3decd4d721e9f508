package dax_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
)

func TestParseBadblocks(t *testing.T) {
	ext := func(s, n uint64) extent.Extent { return extent.Extent{Start: s, Len: n} }
	cases := []struct {
		name string
		in   string
		want []extent.Extent // nil with err
		err  bool
	}{
		{"empty file", "", []extent.Extent{}, false},
		{"disk without a list", "\n", []extent.Extent{}, false},
		{"one range", "300 4\n", []extent.Extent{ext(300, 4)}, false},
		{"no final newline", "300 4", []extent.Extent{ext(300, 4)}, false},
		{"sorted", "8 8\n32 1\n", []extent.Extent{ext(8, 8), ext(32, 1)}, false},
		{"unsorted", "32 1\n8 8\n", []extent.Extent{ext(8, 8), ext(32, 1)}, false},
		{"touching ranges coalesce", "0 512\n512 512\n", []extent.Extent{ext(0, 1024)}, false},
		{"overlapping", "10 10\n15 10\n12 1\n", []extent.Extent{ext(10, 15)}, false},
		{"extra spaces", "  7\t2  \n\n", []extent.Extent{ext(7, 2)}, false},
		{"large sector", "4611686018427387000 4\n", []extent.Extent{ext(4611686018427387000, 4)}, false},
		{"one field", "300\n", nil, true},
		{"three fields", "300 4 1\n", nil, true},
		{"zero count", "300 0\n", nil, true},
		{"negative", "-1 4\n", nil, true},
		{"plus sign", "+1 4\n", nil, true},
		{"hex", "0x10 4\n", nil, true},
		{"words", "bad blocks\n", nil, true},
		{"past MaxSector", "4611686018427387903 2\n", nil, true},
		{"overflow", "18446744073709551616 1\n", nil, true},
		{"garbage after good lines", "1 1\nx\n", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := dax.ParseBadblocks([]byte(c.in))
			if c.err {
				if !errors.Is(err, dax.ErrBadblocks) || !errors.Is(err, syscall.EINVAL) {
					t.Fatalf("ParseBadblocks(%q) = %v, %v; want an ErrBadblocks", c.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBadblocks(%q): %v", c.in, err)
			}
			var exts []extent.Extent
			for e := range got.Extents() {
				exts = append(exts, e)
			}
			if fmt.Sprint(exts) != fmt.Sprint(c.want) && !(len(exts) == 0 && len(c.want) == 0) {
				t.Errorf("ParseBadblocks(%q) = %v, want %v", c.in, exts, c.want)
			}
		})
	}
}

// FuzzParseBadblocks: parsing never panics; what parses holds exactly the
// sectors of its lines (checked on a line-by-line reading of its own), and
// printing it as badblocks_show would parses back to the same set.
func FuzzParseBadblocks(f *testing.F) {
	for _, s := range []string{"", "\n", "300 4\n", "8 8\n0 8\n", "1 2 3", "-1 1", "10 10\n15 10\n", "4611686018427387903 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := dax.ParseBadblocks(data)
		if err != nil {
			if !errors.Is(err, dax.ErrBadblocks) {
				t.Fatalf("error %v is not ErrBadblocks", err)
			}
			return
		}
		// Independent reading: every line's range is in the set, and the
		// set has no more sectors than the lines' union.
		var lines []extent.Extent
		for _, line := range strings.Split(string(data), "\n") {
			var s, n uint64
			if len(strings.Fields(line)) == 0 {
				continue
			}
			if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d %d", &s, &n); err != nil {
				t.Fatalf("parsed %q but its line %q does not scan: %v", data, line, err)
			}
			e := extent.Extent{Start: s, Len: n}
			if !extent.Of(e).Subtract(set).Empty() {
				t.Fatalf("line %q is not all in %v", line, set)
			}
			lines = append(lines, e)
		}
		if !set.Subtract(extent.Of(lines...)).Empty() {
			t.Fatalf("%v has sectors no line gave", set)
		}
		var out strings.Builder
		for e := range set.Extents() {
			fmt.Fprintf(&out, "%d %d\n", e.Start, e.Len)
		}
		back, err := dax.ParseBadblocks([]byte(out.String()))
		if err != nil || !back.Equal(set) {
			t.Fatalf("printed %q parses back to %v, %v; want %v", out.String(), back, err, set)
		}
	})
}
