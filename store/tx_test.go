package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

func pois(start, n uint64) extent.Set { return extent.Of(extent.Extent{Start: start, Len: n}) }

func evs(n int) []rmapchain.Event {
	var out []rmapchain.Event
	for i := range n {
		out = append(out, sampleEvent(i))
	}
	return out
}

func update(t testing.TB, db *store.DB, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func view(t testing.TB, db *store.DB, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := db.View(fn); err != nil {
		t.Fatal(err)
	}
}

func TestSamplesSetEveryField(t *testing.T) {
	nonZero(t, sampleDevice("a"))
	nonZero(t, sampleLeaf("a"))
	nonZero(t, sampleHolder("a"))
	nonZero(t, sampleFollowUp(1))
	nonZero(t, sampleEvent(1).Cause)
}

// crud is the store's API for one record type, rendered to strings so the
// cases below can share one test.
type crud struct {
	name   string
	sample func(key string) any
	put    func(tx *store.Tx, r any) error
	get    func(tx *store.Tx, key string) (string, error)
	list   func(tx *store.Tx) ([]string, error)
	del    func(tx *store.Tx, key string) error
	show   func(r any) string
	modify func(r any) any // a different record with the same key
}

func crudCases(t *testing.T) []crud {
	return []crud{
		{
			name:   "device",
			sample: func(k string) any { return sampleDevice(k) },
			put:    func(tx *store.Tx, r any) error { return tx.PutDevice(r.(store.DeviceRecord)) },
			get: func(tx *store.Tx, k string) (string, error) {
				r, err := tx.Device(k)
				return showDevice(t, r), err
			},
			list: func(tx *store.Tx) (out []string, err error) {
				rs, err := tx.Devices()
				for _, r := range rs {
					out = append(out, showDevice(t, r))
				}
				return out, err
			},
			del:  func(tx *store.Tx, k string) error { return tx.DeleteDevice(k) },
			show: func(r any) string { return showDevice(t, r.(store.DeviceRecord)) },
			modify: func(r any) any {
				d := r.(store.DeviceRecord)
				d.Active, d.Inactive, d.Pristine, d.ErrorRanges, d.Suspended = nil, nil, nil, extent.Set{}, false
				return d
			},
		},
		{
			name:   "leaf",
			sample: func(k string) any { return sampleLeaf(k) },
			put:    func(tx *store.Tx, r any) error { return tx.PutLeaf(r.(store.LeafRecord)) },
			get: func(tx *store.Tx, k string) (string, error) {
				r, err := tx.Leaf(k)
				return showLeaf(t, r), err
			},
			list: func(tx *store.Tx) (out []string, err error) {
				rs, err := tx.Leaves()
				for _, r := range rs {
					out = append(out, showLeaf(t, r))
				}
				return out, err
			},
			del:  func(tx *store.Tx, k string) error { return tx.DeleteLeaf(k) },
			show: func(r any) string { return showLeaf(t, r.(store.LeafRecord)) },
			modify: func(r any) any {
				l := r.(store.LeafRecord)
				l.Identity, l.Lost, l.Size = nil, false, 8
				return l
			},
		},
		{
			name:   "holder",
			sample: func(k string) any { return sampleHolder(k) },
			put:    func(tx *store.Tx, r any) error { return tx.PutHolder(r.(store.HolderRecord)) },
			get: func(tx *store.Tx, k string) (string, error) {
				r, err := tx.Holder(k)
				return showHolder(t, r), err
			},
			list: func(tx *store.Tx) (out []string, err error) {
				rs, err := tx.Holders()
				for _, r := range rs {
					out = append(out, showHolder(t, r))
				}
				return out, err
			},
			del:  func(tx *store.Tx, k string) error { return tx.DeleteHolder(k) },
			show: func(r any) string { return showHolder(t, r.(store.HolderRecord)) },
			modify: func(r any) any {
				h := r.(store.HolderRecord)
				h.PID = 0
				return h
			},
		},
	}
}

// TestCRUD stores, reads back, lists, replaces and deletes records of each
// type, across a close and reopen, with keys that sort differently as
// bytes and as numbers.
func TestCRUD(t *testing.T) {
	keys := []string{"vg0-lv10", "/dev/pmem1", "vg0-lv9", "259:3", "a b\tc", "Ω", "vg0-lv1"}
	sorted := []string{"/dev/pmem1", "259:3", "a b\tc", "vg0-lv1", "vg0-lv10", "vg0-lv9", "Ω"}
	for _, c := range crudCases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := newDB(t)
			db := mustOpen(t, path, store.Options{})
			view(t, db, func(tx *store.Tx) error {
				got, err := c.list(tx)
				if err != nil || len(got) != 0 {
					t.Errorf("new database lists %q, %v", got, err)
				}
				if _, err := c.get(tx, keys[0]); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("get of a missing key: %v; want ErrNotFound", err)
				}
				return nil
			})
			update(t, db, func(tx *store.Tx) error {
				for _, k := range keys {
					if err := c.put(tx, c.sample(k)); err != nil {
						return err
					}
				}
				return nil
			})
			db.Close()
			db = mustOpen(t, path, store.Options{ReadOnly: true})
			var want []string
			for _, k := range sorted {
				want = append(want, c.show(c.sample(k)))
			}
			view(t, db, func(tx *store.Tx) error {
				got, err := c.list(tx)
				if err != nil {
					return err
				}
				compareLists(t, "listed", got, want)
				for _, k := range keys {
					got, err := c.get(tx, k)
					if err != nil {
						return err
					}
					if want := c.show(c.sample(k)); got != want {
						t.Errorf("get %q:\n got %s\nwant %s", k, got, want)
					}
				}
				return nil
			})
			db.Close()

			db = mustOpen(t, path, store.Options{})
			update(t, db, func(tx *store.Tx) error {
				if err := c.put(tx, c.modify(c.sample(keys[0]))); err != nil {
					return err
				}
				if err := c.del(tx, keys[1]); err != nil {
					return err
				}
				if err := c.del(tx, keys[1]); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("second delete: %v; want ErrNotFound", err)
				}
				return nil
			})
			view(t, db, func(tx *store.Tx) error {
				got, err := c.get(tx, keys[0])
				if want := c.show(c.modify(c.sample(keys[0]))); err != nil || got != want {
					t.Errorf("replaced record:\n got %s, %v\nwant %s", got, err, want)
				}
				if _, err := c.get(tx, keys[1]); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("deleted record: %v; want ErrNotFound", err)
				}
				all, err := c.list(tx)
				if err != nil || len(all) != len(keys)-1 {
					t.Errorf("%d records after a delete, %v; want %d", len(all), err, len(keys)-1)
				}
				return nil
			})
		})
	}
}

// TestPutInvalid: records that cannot be stored are refused with
// ErrInvalid, and the refusal rolls back with the rest of the Update.
func TestPutInvalid(t *testing.T) {
	long := strings.Repeat("x", 40000) // over bbolt's 32 KiB key limit
	cases := []struct {
		name string
		put  func(tx *store.Tx) error
	}{
		{"device without a name", func(tx *store.Tx) error { return tx.PutDevice(store.DeviceRecord{}) }},
		{"leaf without an ID", func(tx *store.Tx) error { return tx.PutLeaf(store.LeafRecord{Ref: "/dev/pmem0"}) }},
		{"holder without a device", func(tx *store.Tx) error { return tx.PutHolder(store.HolderRecord{Holder: "me"}) }},
		{"poison without a leaf", func(tx *store.Tx) error { return tx.SetPoison("", pois(0, 1)) }},
		{"device name too long", func(tx *store.Tx) error { return tx.PutDevice(store.DeviceRecord{Name: long}) }},
		{"leaf identity not JSON", func(tx *store.Tx) error {
			return tx.PutLeaf(store.LeafRecord{ID: "x", Identity: []byte("{oops")})
		}},
		{"meta schema", func(tx *store.Tx) error { return tx.SetMeta("schema", be64(1)) }},
		{"meta without a key", func(tx *store.Tx) error { return tx.SetMeta("", []byte("v")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newDB(t)
			before := testenv.StateOf(t, path)
			db := mustOpen(t, path, store.Options{})
			err := db.Update(func(tx *store.Tx) error {
				if err := tx.PutDevice(sampleDevice("first")); err != nil {
					return err
				}
				return tc.put(tx)
			})
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("got %v; want ErrInvalid", err)
			}
			db.Close()
			testenv.SameState(t, path, before, "the refused Update")
		})
	}
}

// TestRefusedUpdateWritesNothing: an Update whose function writes to every
// bucket and then fails (or panics) leaves the file byte-for-byte as it
// was, returns the function's error unchanged, and the writes are not
// visible afterwards; event numbers are not used up.
func TestRefusedUpdateWritesNothing(t *testing.T) {
	errRefused := errors.New("refused by the test")
	writeAll := func(tx *store.Tx) error {
		for i := range 200 { // enough to need new pages
			if err := tx.PutDevice(sampleDevice(fmt.Sprintf("new%03d", i))); err != nil {
				return err
			}
		}
		steps := []error{
			tx.DeleteDevice("old"), tx.PutLeaf(sampleLeaf("l2")), tx.DeleteLeaf("l1"),
			tx.SetPoison("l1", extent.Set{}), tx.SetPoison("l2", pois(5, 5)),
			tx.PutHolder(sampleHolder("new000")), tx.DeleteHolder("old"),
			tx.SetMeta("k", []byte("new")), tx.SetMeta("gone", nil), tx.TrimEvents(1),
		}
		_, err := tx.AppendEvents(evs(50))
		return errors.Join(append(steps, err)...)
	}
	cases := []struct {
		name  string
		fn    func(tx *store.Tx) error
		want  error // nil: panics
		exact bool  // Update returns want itself
	}{
		{"nothing written, error", func(tx *store.Tx) error { return errRefused }, errRefused, true},
		{"everything written, error", func(tx *store.Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			return errRefused
		}, errRefused, true},
		{"everything written, wrapped error", func(tx *store.Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			return fmt.Errorf("command: %w", errRefused)
		}, errRefused, false},
		{"everything written, panic", func(tx *store.Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			panic("the test panics")
		}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newDB(t)
			db := mustOpen(t, path, store.Options{})
			update(t, db, func(tx *store.Tx) error {
				_, err := tx.AppendEvents(evs(3))
				return errors.Join(err, tx.PutDevice(sampleDevice("old")), tx.PutLeaf(sampleLeaf("l1")),
					tx.SetPoison("l1", pois(1, 1)), tx.PutHolder(sampleHolder("old")),
					tx.SetMeta("k", []byte("old")), tx.SetMeta("gone", []byte("here")))
			})
			db.Close()
			before := testenv.StateOf(t, path)
			db = mustOpen(t, path, store.Options{})

			func() {
				defer func() {
					r := recover()
					if (r != nil) != (tc.want == nil) {
						t.Errorf("recovered %v", r)
					}
				}()
				err := db.Update(tc.fn)
				if !errors.Is(err, tc.want) || (tc.exact && err != tc.want) {
					t.Errorf("Update returned %v; want %v", err, tc.want)
				}
			}()

			view(t, db, func(tx *store.Tx) error {
				devs, err := tx.Devices()
				if err != nil || len(devs) != 1 || devs[0].Name != "old" {
					t.Errorf("devices after the refused update: %d, %v", len(devs), err)
				}
				if _, err := tx.Leaf("l1"); err != nil {
					t.Errorf("leaf l1: %v", err)
				}
				if p, err := tx.Poison("l1"); err != nil || !p.Equal(pois(1, 1)) {
					t.Errorf("poison of l1: %v, %v", p, err)
				}
				if p, err := tx.Poison("l2"); err != nil || !p.Empty() {
					t.Errorf("poison of l2: %v, %v", p, err)
				}
				if v, err := tx.Meta("k"); string(v) != "old" {
					t.Errorf("meta k = %q, %v", v, err)
				}
				if last, err := tx.LastSeq(); last != 3 || err != nil {
					t.Errorf("LastSeq = %d, %v; want 3", last, err)
				}
				return nil
			})
			// The numbers a refused update drew are drawn again.
			err := db.Update(func(tx *store.Tx) error {
				got, err := tx.AppendEvents(evs(1))
				if err == nil && got[0].Seq != 4 {
					t.Errorf("next event after the refused update has seq %d, want 4", got[0].Seq)
				}
				return errRefused
			})
			if err != errRefused {
				t.Errorf("Update returned %v", err)
			}
			db.Close()
			testenv.SameState(t, path, before, "the refused Update")
		})
	}
}

// TestPoison: missing is empty, sets round trip (strided runs too), and
// the empty set deletes the key.
func TestPoison(t *testing.T) {
	path := newDB(t)
	db := mustOpen(t, path, store.Options{})
	strided := extent.FromRuns(extent.Run{Start: 8, Len: 8, Stride: 32, Count: 1 << 30}, extent.Run{Start: 1 << 50, Len: 1, Count: 1})
	cases := []struct {
		name string
		set  extent.Set
	}{
		{"one sector", pois(0, 1)},
		{"two extents", extent.Of(extent.Extent{Start: 1, Len: 2}, extent.Extent{Start: 100, Len: 7})},
		{"strided", strided},
		{"up to MaxSector", pois(extent.MaxSector-8, 8)},
		{"empty", extent.Set{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			update(t, db, func(tx *store.Tx) error {
				if p, err := tx.Poison("leaf"); err != nil || !p.Empty() {
					t.Errorf("before: %v, %v", p, err)
				}
				return tx.SetPoison("leaf", tc.set)
			})
			view(t, db, func(tx *store.Tx) error {
				p, err := tx.Poison("leaf")
				if err != nil || !p.Equal(tc.set) || p.Sectors() != tc.set.Sectors() {
					t.Errorf("got %v, %v; want %v", p, err, tc.set)
				}
				return nil
			})
			update(t, db, func(tx *store.Tx) error { return tx.SetPoison("leaf", extent.Set{}) })
		})
	}
	db.Close()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	bdb.View(func(tx *bolt.Tx) error {
		if k, v := tx.Bucket([]byte("poison")).Cursor().First(); k != nil {
			t.Errorf("SetPoison with the empty set left %q = %q", k, v)
		}
		return nil
	})
}

// TestEvents appends batches, reopens, and reads from every starting
// point; numbering is consecutive across transactions and reopens.
func TestEvents(t *testing.T) {
	path := newDB(t)
	db := mustOpen(t, path, store.Options{})
	batches := []int{1, 0, 5, 2, 17}
	var want []rmapchain.Event
	for _, n := range batches {
		in := evs(n)
		if n > 1 {
			in[1] = sampleFollowUp(1) // every field kept, the follow-ups' too
		}
		update(t, db, func(tx *store.Tx) error {
			got, err := tx.AppendEvents(in)
			if err != nil {
				return err
			}
			if len(got) != n {
				t.Fatalf("AppendEvents returned %d events for %d", len(got), n)
			}
			for i := range got {
				if in[i].Seq != 999 {
					t.Errorf("AppendEvents changed its argument's Seq to %d", in[i].Seq)
				}
				if got[i].Seq != uint64(len(want)+1) {
					t.Errorf("event %d got seq %d", len(want)+1, got[i].Seq)
				}
				c := in[i]
				c.Seq = got[i].Seq
				if showEvent(t, got[i]) != showEvent(t, c) {
					t.Errorf("returned %s, stored %s", showEvent(t, got[i]), showEvent(t, c))
				}
				want = append(want, c)
			}
			return nil
		})
		db.Close()
		db = mustOpen(t, path, store.Options{})
	}
	total := uint64(len(want))
	view(t, db, func(tx *store.Tx) error {
		if last, err := tx.LastSeq(); last != total || err != nil {
			t.Errorf("LastSeq = %d, %v; want %d", last, err, total)
		}
		for since := uint64(0); since <= total+1; since++ {
			var got []string
			if err := tx.Events(since, func(ev rmapchain.Event) error { got = append(got, showEvent(t, ev)); return nil }); err != nil {
				return err
			}
			var w []string
			for _, ev := range want {
				if ev.Seq > since {
					w = append(w, showEvent(t, ev))
				}
			}
			compareLists(t, fmt.Sprintf("events since %d", since), got, w)
		}
		if err := tx.Events(math.MaxUint64, func(rmapchain.Event) error { t.Error("event after MaxUint64"); return nil }); err != nil {
			t.Error(err)
		}
		// fn's error stops the walk and comes back unchanged.
		stop := errors.New("stop")
		n := 0
		err := tx.Events(0, func(rmapchain.Event) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("Events with a failing fn: %v after %d calls", err, n)
		}
		return nil
	})
}

// TestTrimEvents keeps the newest events by sequence number and never
// reuses numbers.
func TestTrimEvents(t *testing.T) {
	cases := []struct {
		name      string
		trims     []uint64 // successive TrimEvents calls after 10 events
		wantFirst uint64   // first remaining seq, 0 if none
	}{
		{"keep more than there are", []uint64{100}, 1},
		{"keep all exactly", []uint64{10}, 1},
		{"keep 3", []uint64{3}, 8},
		{"keep 3 then 5", []uint64{3, 5}, 8},
		{"keep 1", []uint64{1}, 10},
		{"keep none", []uint64{0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t, newDB(t), store.Options{})
			update(t, db, func(tx *store.Tx) error { _, err := tx.AppendEvents(evs(10)); return err })
			for _, k := range tc.trims {
				update(t, db, func(tx *store.Tx) error { return tx.TrimEvents(k) })
			}
			seqs := func() (out []uint64) {
				view(t, db, func(tx *store.Tx) error {
					return tx.Events(0, func(ev rmapchain.Event) error { out = append(out, ev.Seq); return nil })
				})
				return out
			}
			var want []uint64
			for s := tc.wantFirst; s > 0 && s <= 10; s++ {
				want = append(want, s)
			}
			if got := seqs(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after trimming: %v, want %v", got, want)
			}
			update(t, db, func(tx *store.Tx) error {
				if last, _ := tx.LastSeq(); last != 10 {
					t.Errorf("LastSeq after trimming = %d, want 10", last)
				}
				got, err := tx.AppendEvents(evs(1))
				if err == nil && got[0].Seq != 11 {
					t.Errorf("next seq after trimming = %d, want 11", got[0].Seq)
				}
				return err
			})
		})
	}
}

// TestMeta: settings round trip, are copies, and nil deletes.
func TestMeta(t *testing.T) {
	db := mustOpen(t, newDB(t), store.Options{})
	var kept []byte
	update(t, db, func(tx *store.Tx) error {
		if _, err := tx.Meta("lock-timeout"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing key: %v; want ErrNotFound", err)
		}
		v := []byte("10s")
		if err := tx.SetMeta("lock-timeout", v); err != nil {
			return err
		}
		v[0] = 'X' // the caller's slice is the caller's
		if err := tx.SetMeta("empty", []byte{}); err != nil {
			return err
		}
		var err error
		kept, err = tx.Meta("lock-timeout")
		return err
	})
	view(t, db, func(tx *store.Tx) error {
		if v, err := tx.Meta("lock-timeout"); string(v) != "10s" || err != nil {
			t.Errorf("Meta = %q, %v", v, err)
		}
		if v, err := tx.Meta("empty"); v == nil || len(v) != 0 || err != nil {
			t.Errorf("empty value: %q (nil: %v), %v", v, v == nil, err)
		}
		if v, err := tx.Meta("schema"); !bytes.Equal(v, be64(store.SchemaVersion)) || err != nil {
			t.Errorf("schema: %q, %v", v, err)
		}
		return nil
	})
	if string(kept) != "10s" {
		t.Errorf("a value read in a finished transaction is %q", kept)
	}
	update(t, db, func(tx *store.Tx) error { return tx.SetMeta("lock-timeout", nil) })
	view(t, db, func(tx *store.Tx) error {
		if _, err := tx.Meta("lock-timeout"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after SetMeta(nil): %v; want ErrNotFound", err)
		}
		return nil
	})
}
