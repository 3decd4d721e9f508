package main

import (
	"bytes"
	"encoding/json"
)

// row is one element of a JSON report: keys in the order they were added,
// as LVM prints its fields, rather than Go's sorted map keys.
type row []kv

type kv struct {
	k string
	v any
}

func (r row) with(k string, v any) row { return append(r, kv{k, v}) }

// MarshalJSON writes the keys in order.
func (r row) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
