package store_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/store"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestOnDiskGolden pins the bytes the store writes for each kind of
// record, read back with bbolt directly: changing them changes the file
// format, which needs a new SchemaVersion. Regenerate with -update and
// review the diff by eye.
func TestOnDiskGolden(t *testing.T) {
	path := newDB(t)
	db := mustOpen(t, path, store.Options{})
	update(t, db, func(tx *store.Tx) error {
		_, err := tx.AppendEvents(evs(2))
		bare := store.DeviceRecord{Name: "bare", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		return joinErrs(err, tx.PutDevice(sampleDevice("vg0-data")), tx.PutDevice(bare),
			tx.PutLeaf(sampleLeaf("pmem:1c0e9c5a")), tx.PutLeaf(store.LeafRecord{ID: "file:/srv/pmem.img", Kind: "file"}),
			tx.PutHolder(sampleHolder("vg0-data")),
			tx.SetPoison("pmem:1c0e9c5a", extent.FromRuns(extent.Run{Start: 64, Len: 8, Stride: 128, Count: 4}, extent.Run{Start: 9000, Len: 3, Count: 1})),
			tx.SetMeta("engine", []byte(`{"lock_timeout":"10s"}`)))
	})
	db.Close()

	var buf bytes.Buffer
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	bdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			fmt.Fprintf(&buf, "%s/ (sequence %d)\n", name, b.Sequence())
			return b.ForEach(func(k, v []byte) error {
				key := fmt.Sprintf("%q", k)
				if string(name) == "events" || string(k) == "schema" {
					key = fmt.Sprintf("%x", k)
				}
				val := string(v)
				if string(k) == "schema" {
					val = fmt.Sprintf("%x", v)
				}
				fmt.Fprintf(&buf, "  %s = %s\n", key, val)
				return nil
			})
		})
	})

	golden := filepath.Join("testdata", "ondisk.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("on-disk bytes differ from %s (run with -update and review):\n%s", golden, buf.String())
	}
}

func joinErrs(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
