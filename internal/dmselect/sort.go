package dmselect

import (
	"cmp"
	"fmt"
	"strings"
)

// SortKey is one key of -O/--sort.
type SortKey struct {
	Field Field
	Desc  bool
}

// ParseSort parses a sort specification: fields separated by commas, each
// optionally prefixed by '+' (ascending, the default) or '-' (descending).
func ParseSort(spec string, fields []Field) ([]SortKey, error) {
	var keys []SortKey
	for _, k := range strings.Split(spec, ",") {
		if k == "" {
			continue
		}
		desc := false
		switch k[0] {
		case '-':
			desc, k = true, k[1:]
		case '+':
			k = k[1:]
		}
		f, ok := lookup(fields, k)
		if !ok {
			return nil, &Error{Lines: []string{fmt.Sprintf("Unrecognised field: %s", k)}}
		}
		keys = append(keys, SortKey{Field: f, Desc: desc})
	}
	return keys, nil
}

// Compare orders two rows by keys, as libdm's _row_compare: numbers
// numerically, strings by bytes, the first key that differs decides.
func Compare(keys []SortKey, a, b Row) int {
	for _, k := range keys {
		va, vb := a(k.Field.Name), b(k.Field.Name)
		var c int
		if k.Field.Kind == Number {
			c = cmp.Compare(va.N, vb.N)
		} else {
			c = strings.Compare(va.S, vb.S)
		}
		if c == 0 {
			continue
		}
		if k.Desc {
			return -c
		}
		return c
	}
	return 0
}
