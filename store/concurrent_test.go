package store_test

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// writerStep is update k of writer id: one device and one event naming
// both.
func writerStep(tx *store.Tx, id string, k int) error {
	name := fmt.Sprintf("w%s-%d", id, k)
	if err := tx.PutDevice(store.DeviceRecord{Name: name, Active: strp("0 8 zero"), Created: t0}); err != nil {
		return err
	}
	_, err := tx.AppendEvents([]rmapchain.Event{{Time: t0, Kind: rmapchain.Cleared, Device: name,
		Ranges: extent.Of(extent.Extent{Start: uint64(k), Len: 1})}})
	return err
}

// TestConcurrentWriters runs 16 writer processes at once, each opening
// the database with a short lock timeout, doing one Update and closing it,
// several times over. Every attempt must end in a commit or ErrLocked, and
// the database must hold exactly the committed updates: one device and one
// event each, events numbered 1..n without gaps.
func TestConcurrentWriters(t *testing.T) {
	const writers = 16
	perWriter := 10
	if testing.Short() {
		perWriter = 3
	}
	path := newDB(t)
	var kids []*child
	for w := range writers {
		kids = append(kids, startChild(t, "writer", path, strconv.Itoa(w), strconv.Itoa(perWriter), "100ms"))
	}
	committed := map[string]bool{}
	locked := 0
	for w, c := range kids {
		lines, err := c.rest()
		if err != nil {
			t.Errorf("writer %d: %v (said %q)", w, err, lines)
		}
		if len(lines) != perWriter {
			t.Errorf("writer %d made %d reports, want %d: %q", w, len(lines), perWriter, lines)
		}
		for k, l := range lines {
			name := fmt.Sprintf("w%d-%d", w, k)
			switch l {
			case fmt.Sprintf("ok %d %d", w, k):
				committed[name] = true
			case fmt.Sprintf("locked %d %d", w, k):
				locked++
			default:
				t.Errorf("writer %d, update %d: %q", w, k, l)
			}
		}
	}
	t.Logf("%d updates committed, %d gave up on the lock", len(committed), locked)
	if len(committed) == 0 {
		t.Fatal("no update was committed")
	}

	db := mustOpen(t, path, store.Options{ReadOnly: true})
	err := db.View(func(tx *store.Tx) error {
		devs, err := tx.Devices()
		if err != nil {
			return err
		}
		var got []string
		for _, d := range devs {
			got = append(got, d.Name)
		}
		compareLists(t, "devices", got, slices.Sorted(maps.Keys(committed)))

		seen := map[string]bool{}
		var seq uint64
		err = tx.Events(0, func(ev rmapchain.Event) error {
			seq++
			if ev.Seq != seq {
				t.Errorf("event %d has seq %d", seq, ev.Seq)
			}
			k, _ := strconv.ParseUint(ev.Device[strings.IndexByte(ev.Device, '-')+1:], 10, 64)
			if !committed[ev.Device] || seen[ev.Device] || !ev.Ranges.Equal(extent.Of(extent.Extent{Start: k, Len: 1})) {
				t.Errorf("unexpected event %+v", ev)
			}
			seen[ev.Device] = true
			return nil
		})
		if err != nil {
			return err
		}
		if len(seen) != len(committed) {
			t.Errorf("%d events for %d committed updates", len(seen), len(committed))
		}
		if last, err := tx.LastSeq(); err != nil || last != uint64(len(committed)) {
			t.Errorf("LastSeq = %d, %v; want %d", last, err, len(committed))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
