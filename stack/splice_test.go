package stack_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

func newPool(t *testing.T) (*stack.Pool, []*stacktest.MemLeaf) {
	t.Helper()
	a := stacktest.NewMemLeaf("/a", "a", 4096, true)
	b := stacktest.NewMemLeaf("/b", "b", 4096, true)
	return stack.NewPool(stacktest.Opener(a, b)), []*stacktest.MemLeaf{a, b}
}

func TestSplice(t *testing.T) {
	tests := []struct {
		name  string
		table string
		bad   []extent.Extent
		want  string // expected table text, or "error: <substring>"
	}{
		{"linear keeps identity offsets", "0 1000 linear /a 0", []extent.Extent{{Start: 100, Len: 8}},
			"0 100 linear /a 0\n100 8 error \n108 892 linear /a 108"},
		{"offset linear", "0 1000 linear /a 500", []extent.Extent{{Start: 0, Len: 10}, {Start: 990, Len: 10}},
			"0 10 error \n10 980 linear /a 510\n990 10 error "},
		{"bad range spanning two segments merges into one error segment", "0 100 linear /a 0\n100 100 linear /b 0", []extent.Extent{{Start: 90, Len: 20}},
			"0 90 linear /a 0\n90 20 error \n110 90 linear /b 10"},
		{"adjacent existing error segment merges", "0 100 linear /a 0\n100 16 error\n116 100 linear /b 0", []extent.Extent{{Start: 96, Len: 4}},
			"0 96 linear /a 0\n96 20 error \n116 100 linear /b 0"},
		{"striped cut at whole rows", "0 64 striped 2 8 /a 0 /b 0", []extent.Extent{{Start: 16, Len: 16}},
			"0 16 striped 2 8 /a 0 /b 0\n16 16 error \n32 32 striped 2 8 /a 16 /b 16"},
		{"striped cut inside a row is refused", "0 64 striped 2 8 /a 0 /b 0", []extent.Extent{{Start: 3, Len: 1}},
			"error: sectors 0..2 of the striped segment at 0+64 cannot be a segment of their own: a striped segment is cut only at whole stripe rows (2 stripes of 8 sectors: every 16 sectors from its start)"},
		{"dust is cut only whole, with its reason", "0 64 dust /a 0 512", []extent.Extent{{Start: 8, Len: 1}},
			"error: sectors 0..7 of the dust segment at 0+64 cannot be a segment of their own: a dust segment keeps one list"},
		{"dust covered whole by the bad range is one error segment", "0 8 linear /b 0\n8 64 dust /a 0 512", []extent.Extent{{Start: 8, Len: 64}},
			"0 8 linear /b 0\n8 64 error "},
		{"nothing bad gives the table back", "0 10 linear /a 0\n10 10 zero", nil,
			"0 10 linear /a 0\n10 10 zero "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newPool(t)
			d := stacktest.MustCreate(t, p, "d", tc.table)
			lines, err := d.Active().Splice(extent.Of(tc.bad...))
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !errors.Is(err, stack.ErrInvalid) || !strings.Contains(err.Error(), want) {
					t.Fatalf("Splice: %v, want error containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range lines {
				got = append(got, l.String())
			}
			if strings.Join(got, "\n") != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

// TestSpliceMapsLikeOriginal checks on random stacks that every sector of a
// spliced table either fails (it was marked bad) or maps exactly where the
// original table mapped it.
func TestSpliceMapsLikeOriginal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	for iter := 0; iter < 200; iter++ {
		st, err := stacktest.Random(rng, stacktest.Options{Devices: 2, Sparse: true, LeafSectors: 300, ErrorTarget: true, ZeroTarget: true})
		if err != nil {
			t.Fatal(err)
		}
		d := st.Devices[len(st.Devices)-1]
		size := d.Size()
		bad := extent.Of(extent.Extent{Start: rng.Uint64N(size), Len: 1 + rng.Uint64N(8)})
		lines, err := d.Active().Splice(bad)
		if err != nil {
			continue // a striped cut inside a row: refused, checked above
		}
		var text []string
		for _, l := range lines {
			text = append(text, l.String())
		}
		nd := stacktest.MustCreate(t, st.Pool, "spliced", strings.Join(text, "\n"))
		for s := uint64(0); s < size; s++ {
			orig, err1 := st.Pool.Trace(d, s)
			got, err2 := st.Pool.Trace(nd, s)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			o, g := orig[len(orig)-1], got[len(got)-1]
			if bad.Contains(s) {
				if got[0].Err == nil {
					t.Fatalf("sector %d marked bad still maps", s)
				}
				continue
			}
			if (o.Err == nil) != (g.Err == nil) || o.Child != g.Child || o.CSector != g.CSector {
				t.Fatalf("sector %d: spliced maps to %v:%d, original %v:%d\n%s", s, g.Child, g.CSector, o.Child, o.CSector, strings.Join(text, "\n"))
			}
		}
		st.Pool.Remove(nd)
	}
}

func TestMapRange(t *testing.T) {
	p, _ := newPool(t)
	stacktest.MustCreate(t, p, "s0", "0 64 striped 2 8 /a 100 /b 200")
	top := stacktest.MustCreate(t, p, "top", "0 32 linear s0 4\n32 8 error\n40 8 zero")
	pieces, err := p.MapRange(top, 0, 48)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pc := range pieces {
		switch {
		case pc.Killed:
			got = append(got, "error")
		case pc.Leaf == nil:
			got = append(got, "zero")
		default:
			got = append(got, pc.Leaf.Name()+":"+itoa(pc.Sector)+"+"+itoa(pc.Len))
		}
	}
	// top 0..32 is s0 4..36: a 104+4, b 200+8, a 108+8, b 208+8, a 116+4.
	want := "a:104+4 b:200+8 a:108+8 b:208+8 a:116+4 error zero"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %s\nwant %s", strings.Join(got, " "), want)
	}
	if _, err := p.MapRange(top, 40, 9); !errors.Is(err, stack.ErrInvalid) {
		t.Fatalf("range past the end: %v", err)
	}
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}
