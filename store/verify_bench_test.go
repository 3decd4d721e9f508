package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkVerify10kDevices measures the check Open makes of a whole
// file before bbolt maps it, on a database of 10k devices, against
// reading the same file from start to end (os.ReadFile), measured in the
// same run.
//
//	go test ./store -run '^$' -bench Verify -benchtime 2s -count 3
func BenchmarkVerify10kDevices(b *testing.B) {
	path := filepath.Join(b.TempDir(), "daxstack.db")
	db, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	active := "0 524288 linear /dev/pmem0 0\n524288 524288 linear /dev/pmem1 0\n1048576 8 error"
	err = db.Update(func(tx *Tx) error {
		for i := range 10_000 {
			r := DeviceRecord{Name: fmt.Sprintf("vg%d-lv%05d", i%4, i), UUID: fmt.Sprintf("LVM-%032x", i), Minor: uint32(i), Active: &active}
			if err := tx.PutDevice(r); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := verifyFile(f, fi.Size(), path); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	start := time.Now()
	n := max(b.N, 10)
	for range n {
		if _, err := os.ReadFile(path); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Since(start) / time.Duration(n)
	b.ReportMetric(float64(fi.Size()), "file-bytes")
	b.ReportMetric(float64(base.Nanoseconds()), "readfile-ns")
	b.ReportMetric(float64(per)/float64(base), "x-readfile")
}
