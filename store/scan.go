package store

import (
	"errors"
	"runtime/debug"

	"github.com/daxstack/daxstack/rmapchain"
)

// Lenient listings. Devices, Leaves and Holders fail at the first record
// that does not decode, which is right for a caller that needs them all;
// but one damaged record must not make every command fail. The Scan
// methods return the records that decode and, apart, a *RecordError for
// each one that does not (its Key is the device name, leaf ID or claimed
// device), so that the engine can load the rest and show the damaged ones
// as broken. Their error is only for what keeps the whole bucket from
// being read (a missing bucket, damage inside bbolt). A damaged record
// can be replaced with Put* or removed with Delete* as usual.

// ScanDevices returns every device record that decodes, sorted by name,
// and the damaged ones.
func (tx *Tx) ScanDevices() (_ []DeviceRecord, _ []*RecordError, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return devices.scan(tx)
}

// ScanLeaves returns every leaf record that decodes, sorted by ID, and
// the damaged ones.
func (tx *Tx) ScanLeaves() (_ []LeafRecord, _ []*RecordError, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return leaves.scan(tx)
}

// ScanHolders returns every claim that decodes, sorted by device, and the
// damaged ones.
func (tx *Tx) ScanHolders() (_ []HolderRecord, _ []*RecordError, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return holders.scan(tx)
}

// ScanEvents is Events passing over the events that do not decode: it
// calls fn with every good event whose Seq is greater than since, in
// order, and returns the damaged ones. fn's error stops it and is
// returned unchanged.
func (tx *Tx) ScanEvents(since uint64, fn func(rmapchain.Event) error) (bad []*RecordError, err error) {
	inFn := false
	defer tx.guard(&err, debug.SetPanicOnFault(true), &inFn)
	err = tx.events(since, fn, func(re *RecordError) { bad = append(bad, re) }, &inFn)
	return bad, err
}

func (k kind[T]) scan(tx *Tx) ([]T, []*RecordError, error) {
	b, err := tx.bucket(k.bucket)
	if err != nil {
		return nil, nil, err
	}
	out := []T{}
	var bad []*RecordError
	err = b.ForEach(func(key, v []byte) error {
		r, err := k.decode(key, v)
		var re *RecordError
		switch {
		case err == nil:
			out = append(out, r)
		case errors.As(err, &re):
			bad = append(bad, re)
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, bad, nil
}
