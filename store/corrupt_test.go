package store_test

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// TestCorruptRecord puts values behind the store's back that do not
// decode, and checks that every read reaching them fails with ErrCorrupt
// and a *RecordError naming the bucket and key, without panicking, while
// the rest of the database stays readable.
func TestCorruptRecord(t *testing.T) {
	nothing := func(rmapchain.Event) error { return nil }
	cases := []struct {
		name    string
		bucket  string
		key     []byte
		value   []byte // nil: a nested bucket
		wantKey string
		reads   map[string]func(tx *store.Tx) error
	}{
		{"device not JSON", "devices", []byte("a"), []byte("not json"), "a", map[string]func(*store.Tx) error{
			"Device":  func(tx *store.Tx) error { _, err := tx.Device("a"); return err },
			"Devices": func(tx *store.Tx) error { _, err := tx.Devices(); return err },
		}},
		{"device under another name", "devices", []byte("a"), []byte(`{"name":"b"}`), "a", map[string]func(*store.Tx) error{
			"Device":  func(tx *store.Tx) error { _, err := tx.Device("a"); return err },
			"Devices": func(tx *store.Tx) error { _, err := tx.Devices(); return err },
		}},
		{"device JSON null", "devices", []byte("a"), []byte(`null`), "a", map[string]func(*store.Tx) error{
			"Device": func(tx *store.Tx) error { _, err := tx.Device("a"); return err },
		}},
		{"device with bad error ranges", "devices", []byte("a"), []byte(`{"name":"a","error_ranges":[{"offset":5,"length":0}]}`), "a", map[string]func(*store.Tx) error{
			"Device": func(tx *store.Tx) error { _, err := tx.Device("a"); return err },
		}},
		{"device bucket holds a bucket", "devices", []byte("a"), nil, "a", map[string]func(*store.Tx) error{
			"Devices": func(tx *store.Tx) error { _, err := tx.Devices(); return err },
		}},
		{"leaf with negative size", "leaves", []byte("x"), []byte(`{"id":"x","size":-1}`), "x", map[string]func(*store.Tx) error{
			"Leaf":   func(tx *store.Tx) error { _, err := tx.Leaf("x"); return err },
			"Leaves": func(tx *store.Tx) error { _, err := tx.Leaves(); return err },
		}},
		{"holder an array", "holders", []byte("d"), []byte(`[]`), "d", map[string]func(*store.Tx) error{
			"Holder":  func(tx *store.Tx) error { _, err := tx.Holder("d"); return err },
			"Holders": func(tx *store.Tx) error { _, err := tx.Holders(); return err },
		}},
		{"holder with a bad time", "holders", []byte("d"), []byte(`{"device":"d","since":"yesterday"}`), "d", map[string]func(*store.Tx) error{
			"Holders": func(tx *store.Tx) error { _, err := tx.Holders(); return err },
		}},
		{"poison run of length 0", "poison", []byte("x"), []byte(`[{"offset":1,"length":0}]`), "x", map[string]func(*store.Tx) error{
			"Poison": func(tx *store.Tx) error { _, err := tx.Poison("x"); return err },
		}},
		{"poison strided run without stride", "poison", []byte("x"), []byte(`[{"offset":1,"length":1,"count":3}]`), "x", map[string]func(*store.Tx) error{
			"Poison": func(tx *store.Tx) error { _, err := tx.Poison("x"); return err },
		}},
		{"poison truncated", "poison", []byte("x"), []byte(`[{"offset":1,"len`), "x", map[string]func(*store.Tx) error{
			"Poison": func(tx *store.Tx) error { _, err := tx.Poison("x"); return err },
		}},
		{"event not JSON", "events", be64(2), []byte("{"), "2", map[string]func(*store.Tx) error{
			"Events": func(tx *store.Tx) error { return tx.Events(0, nothing) },
		}},
		{"event under another seq", "events", be64(2), []byte(`{"seq":3}`), "2", map[string]func(*store.Tx) error{
			"Events": func(tx *store.Tx) error { return tx.Events(1, nothing) },
		}},
		{"event key of 3 bytes", "events", []byte{0, 0, 9}, []byte(`{"seq":9}`), "000009", map[string]func(*store.Tx) error{
			"Events": func(tx *store.Tx) error { return tx.Events(0, nothing) },
		}},
		{"event a bucket", "events", be64(2), nil, "2", map[string]func(*store.Tx) error{
			"Events": func(tx *store.Tx) error { return tx.Events(0, nothing) },
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newDB(t)
			db := mustOpen(t, path, store.Options{})
			update(t, db, func(tx *store.Tx) error { // good neighbours
				_, err := tx.AppendEvents(evs(1))
				return errors.Join(err, tx.PutDevice(sampleDevice("0")), tx.PutLeaf(sampleLeaf("0")), tx.PutHolder(sampleHolder("0")))
			})
			db.Close()
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(tc.bucket))
				if tc.value == nil {
					_, err := b.CreateBucket(tc.key)
					return err
				}
				return b.Put(tc.key, tc.value)
			})
			db = mustOpen(t, path, store.Options{})
			for name, read := range tc.reads {
				err := db.View(read)
				if !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("%s: %v; want ErrCorrupt", name, err)
					continue
				}
				var re *store.RecordError
				if !errors.As(err, &re) || re.Bucket != tc.bucket || re.Key != tc.wantKey || re.Err == nil {
					t.Errorf("%s: %#v; want a RecordError for %s/%s", name, re, tc.bucket, tc.wantKey)
				}
			}
			view(t, db, func(tx *store.Tx) error {
				if _, err := tx.Device("0"); err != nil {
					t.Errorf("a good device: %v", err)
				}
				if _, err := tx.Leaf("0"); err != nil {
					t.Errorf("a good leaf: %v", err)
				}
				if _, err := tx.Holder("0"); err != nil {
					t.Errorf("a good holder: %v", err)
				}
				return nil
			})
		})
	}
}
