package store_test

// Benchmarks of the store. Each reports its ratio to a plain-file baseline
// measured in the same run, right after its own loop:
//
//	go test ./store -run '^$' -bench . -benchtime 2s -count 3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

const benchDevices = 10_000

// benchDevice is a device as an LVM-like setup would store it: a UUID, a
// four-segment active table over two pmem leaves, and for one device in
// eight an inactive table and spliced error ranges.
func benchDevice(i int) store.DeviceRecord {
	base := uint64(i) << 21
	active := fmt.Sprintf("0 524288 linear /dev/pmem0 %d\n524288 524288 linear /dev/pmem1 %d\n"+
		"1048576 1048576 striped 2 128 /dev/pmem0 %d /dev/pmem1 %d\n2097152 8 error",
		base, base, base+524288, base+524288)
	r := store.DeviceRecord{
		Name: fmt.Sprintf("vg%d-lv%05d", i%4, i), UUID: fmt.Sprintf("LVM-%032x", uint64(i)*0x9e3779b97f4a7c15),
		Minor: uint32(i), Active: &active, EventNr: uint64(i % 7), Created: t0.Add(time.Duration(i) * time.Second),
	}
	if i%8 == 0 {
		inactive := fmt.Sprintf("0 2097160 linear /dev/pmem0 %d", base)
		r.Inactive = &inactive
		r.Pristine = &inactive
		r.ErrorRanges = extent.FromRuns(extent.Run{Start: 1048576, Len: 128, Stride: 256, Count: 4})
	}
	return r
}

// benchFiles makes the database of benchDevices devices and, as the
// baseline, a file of the same JSON values one per line.
func benchFiles(b *testing.B) (dbPath, plainPath string) {
	b.Helper()
	dir := b.TempDir()
	dbPath, plainPath = filepath.Join(dir, "daxstack.db"), filepath.Join(dir, "devices.jsonl")
	db, err := store.Open(dbPath, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *store.Tx) error {
		for i := range benchDevices {
			if err := tx.PutDevice(benchDevice(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	db.Close()
	var plain bytes.Buffer
	bdb, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	bdb.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("devices")).ForEach(func(_, v []byte) error {
			plain.Write(v)
			plain.WriteByte('\n')
			return nil
		})
	})
	bdb.Close()
	if err := os.WriteFile(plainPath, plain.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	return dbPath, plainPath
}

func openRead(b *testing.B, path string, o store.Options) []store.DeviceRecord {
	db, err := store.Open(path, o)
	if err != nil {
		b.Fatal(err)
	}
	var devs []store.DeviceRecord
	err = db.View(func(tx *store.Tx) error {
		devs, err = tx.Devices()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	return devs
}

func readPlain(b *testing.B, path string) []store.DeviceRecord {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	devs := make([]store.DeviceRecord, 0, benchDevices)
	for line := range bytes.Lines(data) {
		var r store.DeviceRecord
		if err := json.Unmarshal(line, &r); err != nil {
			b.Fatal(err)
		}
		devs = append(devs, r)
	}
	return devs
}

var sinkDevs []store.DeviceRecord

// BenchmarkOpenRead10kDevices opens the database, reads all 10k device
// records in one View and closes it: what the engine does before it
// re-parses the tables (the goal: well under 1 s). Read-write opens also
// rebuild bbolt's freelist by scanning the file (NoFreelistSync).
// Baseline in the same run: reading and decoding the same JSON values
// from a plain file. x-vs-file is the baseline's time over ours. Context:
// parse-ns/op, stack.ParseText of all the active tables.
func BenchmarkOpenRead10kDevices(b *testing.B) {
	dbPath, plainPath := benchFiles(b)
	want := readPlain(b, plainPath)
	for _, mode := range []struct {
		name string
		o    store.Options
	}{{"rw", store.Options{}}, {"ro", store.Options{ReadOnly: true}}} {
		b.Run(mode.name, func(b *testing.B) {
			got := openRead(b, dbPath, mode.o)
			if len(got) != benchDevices {
				b.Fatalf("%d devices", len(got))
			}
			for i := range got {
				if showDevice(b, got[i]) != showDevice(b, want[i]) {
					b.Fatalf("device %d differs from the plain file's", i)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sinkDevs = openRead(b, dbPath, mode.o)
			}
			b.StopTimer()
			plain := testenv.Paired(b, func(int) { sinkDevs = readPlain(b, plainPath) })
			b.ReportMetric(plain, "file-ns/op")
			b.ReportMetric(plain/testenv.NsPerOp(b), "x-vs-file")
			parse := testenv.Paired(b, func(int) {
				for _, d := range got {
					if _, err := stack.ParseText(*d.Active, stack.SourceInline); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(parse, "parse-ns/op")
		})
	}
}

// BenchmarkUpdatePutDevice is one Update that replaces one device record
// in the database of 10k devices, committed and synced. Baseline in the
// same run: the durable way to replace a plain file with the same JSON
// (write a temporary file, fsync it, rename it over, fsync the
// directory). x-vs-file is the baseline's time over ours.
func BenchmarkUpdatePutDevice(b *testing.B) {
	dbPath, _ := benchFiles(b)
	db, err := store.Open(dbPath, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	dir := b.TempDir()
	target := filepath.Join(dir, "device.json")
	put := func(i int) {
		r := benchDevice(i % benchDevices)
		r.EventNr = uint64(i)
		if err := db.Update(func(tx *store.Tx) error { return tx.PutDevice(r) }); err != nil {
			b.Fatal(err)
		}
	}
	plainPut := func(i int) {
		r := benchDevice(i % benchDevices)
		r.EventNr = uint64(i)
		v, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		if err := replaceFile(dir, target, v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		put(i)
	}
	b.StopTimer()
	plain := testenv.Paired(b, plainPut)
	b.ReportMetric(plain, "file-ns/op")
	b.ReportMetric(plain/testenv.NsPerOp(b), "x-vs-file")
}

func replaceFile(dir, target string, v []byte) error {
	f, err := os.CreateTemp(dir, "tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(v); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
