package service

import (
	"slices"
	"testing"

	"github.com/daxstack/daxstack/rmapchain"
)

func evs(dev string, seqs ...uint64) []rmapchain.Event {
	out := make([]rmapchain.Event, len(seqs))
	for i, s := range seqs {
		out[i] = rmapchain.Event{Seq: s, Device: dev}
	}
	return out
}

func seqsOf(evs []rmapchain.Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// TestRecentEvents: streams are served from memory only when it holds
// every event after their position; otherwise they must read the log.
func TestRecentEvents(t *testing.T) {
	full := func() *recentEvents {
		r := &recentEvents{}
		r.add(evs("a", 5, 6))
		r.add(evs("b", 7))
		r.add(evs("a", 8))
		return r
	}
	for _, tc := range []struct {
		name    string
		r       *recentEvents
		since   uint64
		devices []string
		want    []uint64
		next    uint64
		ok      bool
	}{
		{"empty: read the log", &recentEvents{}, 0, nil, nil, 0, false},
		{"behind the first: read the log", full(), 3, nil, nil, 3, false},
		{"right before the first", full(), 4, nil, []uint64{5, 6, 7, 8}, 8, true},
		{"in the middle", full(), 6, nil, []uint64{7, 8}, 8, true},
		{"up to date", full(), 8, nil, nil, 8, true},
		{"ahead of everything", full(), 20, nil, nil, 20, true},
		{"filtered: skips but moves on", full(), 4, []string{"b"}, []uint64{7}, 8, true},
		{"filtered: none for it", full(), 7, []string{"b"}, nil, 8, true},
		{"a gap starts over", func() *recentEvents {
			r := full()
			r.add(evs("a", 11, 12))
			return r
		}(), 8, nil, nil, 8, false},
		{"after the gap", func() *recentEvents {
			r := full()
			r.add(evs("a", 11, 12))
			return r
		}(), 10, nil, []uint64{11, 12}, 12, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, ok := tc.r.after(tc.since, tc.devices)
			if !slices.Equal(seqsOf(got), tc.want) || next != tc.next || ok != tc.ok {
				t.Fatalf("after(%d, %v) = %v, %d, %v; want %v, %d, %v", tc.since, tc.devices, seqsOf(got), next, ok, tc.want, tc.next, tc.ok)
			}
		})
	}
}

// TestRecentEventsBounded: memory keeps at most recentMax events, the
// latest, and a stream behind them reads the log.
func TestRecentEventsBounded(t *testing.T) {
	r := &recentEvents{}
	for seq := uint64(1); seq <= 3*recentMax; seq++ {
		r.add(evs("a", seq))
		if len(r.evs) > recentMax {
			t.Fatalf("after %d events memory holds %d", seq, len(r.evs))
		}
	}
	last := uint64(3 * recentMax)
	if r.evs[len(r.evs)-1].Seq != last {
		t.Fatalf("the last kept is %d, want %d", r.evs[len(r.evs)-1].Seq, last)
	}
	if _, _, ok := r.after(1, nil); ok {
		t.Fatal("a stream at 1 is served from memory that lost events after it")
	}
	got, next, ok := r.after(last-3, nil)
	if !ok || next != last || !slices.Equal(seqsOf(got), []uint64{last - 2, last - 1, last}) {
		t.Fatalf("after(%d) = %v, %d, %v", last-3, seqsOf(got), next, ok)
	}
}
