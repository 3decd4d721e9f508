package rmapchain_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// translateWorld is a small diamond with a tail:
//
//	leaf /l0 (pmem0, 1000 sectors) and /l1 (pmem1, 1000 sectors)
//	zmid: 0 200 linear /l0 100            (height 1)
//	amid: 0 64 striped 2 8 /l0 500 /l1 0  (height 1)
//	top:  0 100 linear zmid 50 / 100 64 linear amid 0 / 164 8 error  (height 2)
//	apex: 0 172 linear top 0              (height 3)
//	other: 0 10 linear /l1 900            (height 1, shares no sector with the others)
//
// Names are chosen so that alphabetical order differs from height order.
func translateWorld(t *testing.T) (*stack.Pool, map[string]*stack.Dev) {
	t.Helper()
	l0 := stacktest.NewMemLeaf("/l0", "pmem0", 1000, true)
	l1 := stacktest.NewMemLeaf("/l1", "pmem1", 1000, true)
	p := stack.NewPool(stacktest.Opener(l0, l1))
	devs := map[string]*stack.Dev{}
	for _, d := range []struct{ name, table string }{
		{"zmid", "0 200 linear /l0 100"},
		{"amid", "0 64 striped 2 8 /l0 500 /l1 0"},
		{"top", "0 100 linear zmid 50\n100 64 linear amid 0\n164 8 error"},
		{"apex", "0 172 linear top 0"},
		{"other", "0 10 linear /l1 900"},
	} {
		md := stacktest.MustCreate(t, p, d.name, d.table)
		devs[d.name] = md.Dev()
	}
	devs["/l0"], _ = p.Leaf(l0.ID())
	devs["/l1"], _ = p.Leaf(l1.ID())
	return p, devs
}

// TestTranslate checks the events of one change: one per device whose
// sectors the change reaches, the source first, then by height and name;
// ranges in each device's own sectors, clipped to its size; the cause and
// kind the same on every event; no event where nothing is reached.
func TestTranslate(t *testing.T) {
	type ev struct{ dev, ranges string }
	tests := []struct {
		name   string
		kind   rmapchain.Kind
		source string
		delta  []extent.Extent
		cause  string // the cause's ranges
		want   []ev
	}{
		{"media error through both mids", rmapchain.MediaError, "/l0",
			[]extent.Extent{{Start: 160, Len: 4}, {Start: 508, Len: 2}}, "{160+4 508+2}",
			[]ev{
				{"/l0", "{160+4 508+2}"},
				{"amid", "{16+2}"},      // /l0 500.. is stripe 0: chunk 1 of stripe 0 is amid 16..23
				{"zmid", "{60+4}"},      // /l0 100.. is zmid 0..
				{"top", "{10+4 116+2}"}, // zmid 50.. is top 0..; amid 0.. is top 100..
				{"apex", "{10+4 116+2}"},
			}},
		{"ordering is by height, then name", rmapchain.MediaError, "/l1",
			[]extent.Extent{{Start: 0, Len: 1}, {Start: 905, Len: 1}}, "{0+1 905+1}",
			[]ev{{"/l1", "{0+1 905+1}"}, {"amid", "{8+1}"}, {"other", "{5+1}"}, {"top", "{108+1}"}, {"apex", "{108+1}"}}},
		{"sectors nobody maps give the source's event only", rmapchain.MediaError, "/l0",
			[]extent.Extent{{Start: 0, Len: 50}}, "{0+50}",
			[]ev{{"/l0", "{0+50}"}}},
		{"sectors the parent does not reach", rmapchain.MediaError, "/l0",
			[]extent.Extent{{Start: 100, Len: 40}}, "{100+40}", // zmid 0..39, which top (from zmid 50) does not use
			[]ev{{"/l0", "{100+40}"}, {"zmid", "{0+40}"}}},
		{"delta past the source's end is clipped", rmapchain.Lost, "/l1",
			[]extent.Extent{{Start: 990, Len: 1 << 40}}, "{990+10}",
			[]ev{{"/l1", "{990+10}"}}},
		{"a mapped device as the source", rmapchain.MediaError, "top",
			[]extent.Extent{{Start: 164, Len: 8}, {Start: 170, Len: 100}}, "{164+8}",
			[]ev{{"top", "{164+8}"}, {"apex", "{164+8}"}}},
		{"cleared", rmapchain.Cleared, "/l0",
			[]extent.Extent{{Start: 150, Len: 1}}, "{150+1}",
			[]ev{{"/l0", "{150+1}"}, {"zmid", "{50+1}"}, {"top", "{0+1}"}, {"apex", "{0+1}"}}},
		{"pre-remove of a whole leaf", rmapchain.PreRemove, "/l1",
			[]extent.Extent{{Start: 0, Len: 1000}}, "{0+1000}",
			[]ev{{"/l1", "{0+1000}"}, {"amid", "{8+8*4/16}"}, {"other", "{0+10}"}, {"top", "{108+8*4/16}"}, {"apex", "{108+8*4/16}"}}},
		{"empty delta", rmapchain.MediaError, "/l0", nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, devs := translateWorld(t)
			now := time.Unix(1700000000, 0)
			evs := rmapchain.Translate(p.Graph(), tc.kind, devs[tc.source], extent.Of(tc.delta...), now)
			var got []ev
			for _, e := range evs {
				got = append(got, ev{e.Device, e.Ranges.String()})
				if e.Kind != tc.kind || !e.Time.Equal(now) || e.Seq != 0 {
					t.Errorf("%s: kind %q time %v seq %d", e.Device, e.Kind, e.Time, e.Seq)
				}
				if e.Cause.Device != tc.source || e.Cause.Ranges.String() != tc.cause {
					t.Errorf("%s: cause %s %v, want %s %s", e.Device, e.Cause.Device, e.Cause.Ranges, tc.source, tc.cause)
				}
				if d := devs[e.Device]; e.Ranges.Bounds().End() > d.Size() || e.Ranges.Empty() {
					t.Errorf("%s: ranges %v outside its %d sectors", e.Device, e.Ranges, d.Size())
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("events %v\nwant %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d: %v, want %v", i, got[i], tc.want[i])
				}
			}
			// Every event's ranges are exactly the device's sectors that
			// the forward map sends into the delta at the source.
			src := devs[tc.source]
			delta := extent.Of(tc.delta...)
			for _, e := range evs {
				d := devs[e.Device]
				if d == src {
					continue
				}
				for s := uint64(0); s < d.Size(); s++ {
					if hits := mapsInto(t, p, d, s, src, delta); hits != e.Ranges.Contains(s) {
						t.Errorf("%s sector %d: forward map into the delta %v, event says %v", e.Device, s, hits, e.Ranges.Contains(s))
					}
				}
			}
		})
	}
}

// mapsInto reports whether sector s of d passes through sector set delta
// of device src on its way down.
func mapsInto(t *testing.T, p *stack.Pool, d *stack.Dev, s uint64, src *stack.Dev, delta extent.Set) bool {
	steps, err := p.Trace(d.Mapped(), s)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if st.Device.Dev() == src && delta.Contains(st.Sector) {
			return true
		}
		if st.Child == src && delta.Contains(st.CSector) {
			return true
		}
	}
	return false
}

// TestTranslateJSON checks the wire shape of an event: strided runs carry
// stride and count, plain extents do not.
func TestTranslateJSON(t *testing.T) {
	p, devs := translateWorld(t)
	evs := rmapchain.Translate(p.Graph(), rmapchain.PreRemove, devs["/l1"], extent.Of(extent.Extent{Start: 0, Len: 1000}), time.Unix(0, 0).UTC())
	var amid *rmapchain.Event
	for i := range evs {
		if evs[i].Device == "amid" {
			amid = &evs[i]
		}
	}
	if amid == nil {
		t.Fatalf("no event for amid in %+v", evs)
	}
	b, err := json.Marshal(amid)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":0,"time":"1970-01-01T00:00:00Z","kind":"pre-remove","device":"amid",` +
		`"ranges":[{"offset":8,"length":8,"stride":16,"count":4}],` +
		`"cause":{"device":"/l1","ranges":[{"offset":0,"length":1000}]}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back rmapchain.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Ranges.Equal(amid.Ranges) || back.Device != "amid" || back.Kind != rmapchain.PreRemove || !strings.EqualFold(back.Cause.Device, "/l1") {
		t.Errorf("decoded %+v", back)
	}
}

// TestTranslateSharedSegment: a leaf used twice by one striped segment (two
// stripes) gives one event for the device, with both stripes' sectors.
func TestTranslateSharedSegment(t *testing.T) {
	l := stacktest.NewMemLeaf("/l", "pmem", 1000, true)
	p := stack.NewPool(stacktest.Opener(l))
	stacktest.MustCreate(t, p, "s", "0 64 striped 2 8 /l 0 /l 500")
	ld, _ := p.Leaf(l.ID())
	evs := rmapchain.Translate(p.Graph(), rmapchain.MediaError, ld, extent.Of(extent.Extent{Start: 8, Len: 1}, extent.Extent{Start: 508, Len: 1}), time.Time{})
	if len(evs) != 2 || evs[1].Device != "s" || evs[1].Ranges.String() != "{16+1 24+1}" {
		t.Fatalf("events %+v", evs)
	}
}
