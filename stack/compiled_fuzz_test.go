package stack_test

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// byteSource is a rand.Source that reads the fuzzer's bytes, so that
// every choice of the random stack builder comes from the input; when the
// bytes run out it goes on with a generator seeded by them.
type byteSource struct {
	data []byte
	rest *rand.PCG
}

func newByteSource(data []byte) *byteSource {
	h := fnv.New64a()
	h.Write(data)
	return &byteSource{data: data, rest: rand.NewPCG(h.Sum64(), 14)}
}

func (s *byteSource) Uint64() uint64 {
	if len(s.data) == 0 {
		return s.rest.Uint64()
	}
	var b [8]byte
	n := copy(b[:], s.data)
	s.data = s.data[n:]
	// Few bytes still give every value: the short tail is spread with the
	// generator's bits.
	return binary.LittleEndian.Uint64(b[:]) ^ s.rest.Uint64()>>(8*n)
}

// FuzzCompiled builds random stacks from the input (depth 1 to 4, every
// kind of segment, hooks, shared and empty leaves), compares the compiled
// map of every device with the per-level walk on every sector, then swaps
// a random table in, rebuilds with CompiledMaps and compares again.
//
//	go test ./stack -run '^$' -fuzz '^FuzzCompiled$' -fuzztime 60s
func FuzzCompiled(f *testing.F) {
	for _, seed := range []string{"", "\x00", "\x01\x02\x03\x04", "stripes of stripes", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rng := rand.New(newByteSource(data))
		o := randOpts{devices: 1 + rng.IntN(6), maxSegs: 1 + rng.IntN(6), maxLen: 1 + rng.Uint64N(96), maxDepth: 1 + rng.IntN(4), hooks: rng.IntN(2) == 0}
		rs, err := newRandStack(rng, o)
		if err != nil {
			t.Fatal(err)
		}
		maps := stack.NewCompiledMaps()
		maps.Update(rs.devs...)
		for _, d := range rs.devs {
			if err := checkAll(maps.Get(d), d); err != nil {
				t.Fatalf("%v\n%s", err, describe(rs))
			}
		}
		i := rng.IntN(len(rs.devs))
		d := rs.devs[i]
		if err := rs.p.LoadText(d, rs.randTableBelow(rng, o, i), stack.SourceInline); err != nil {
			if isRefusal(err) {
				return
			}
			t.Fatal(err)
		}
		if err := rs.p.Resume(d); err != nil {
			t.Fatal(err)
		}
		maps.Update(d)
		for _, x := range rs.devs {
			if c := maps.Get(x); !c.Current() {
				t.Fatalf("map of %s not current after swapping %s", x.Name(), d.Name())
			} else if err := checkAll(c, x); err != nil {
				t.Fatalf("after swapping %s: %v\n%s", d.Name(), err, describe(rs))
			}
		}
	})
}
