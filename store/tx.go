package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
)

// Tx is one transaction, given to the function passed to DB.View or
// DB.Update and valid only until it returns. Writing methods fail in a
// View. Records returned are copies: they stay valid after the
// transaction.
type Tx struct {
	tx   *bolt.Tx
	db   *DB
	inFn bool // the caller's function is running (not a method of tx)
}

// Writable reports whether tx is a read-write (Update) transaction.
func (tx *Tx) Writable() bool { return tx.tx.Writable() }

// guard is deferred by every method that reaches into bbolt, with the
// SetPanicOnFault setting to restore: a fault or panic inside bbolt (a
// page the check at Open could not see go bad, a file cut short while
// open) becomes ErrCorrupt and breaks the DB, instead of a crash. A
// panic of a callback of the caller's (cb set) goes on.
func (tx *Tx) guard(err *error, old bool, cb *bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		if cb != nil && *cb {
			panic(r)
		}
		*err = tx.db.fail(r, nil)
	}
}

// bucket returns a root bucket. Open checked they all exist, so a missing
// one means the file changed under us; say so rather than panic.
func (tx *Tx) bucket(name string) (*bolt.Bucket, error) {
	if b := tx.tx.Bucket([]byte(name)); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("store: %w: no %q bucket", ErrCorrupt, name)
}

// kind describes a bucket of JSON records keyed by one of their fields.
type kind[T any] struct {
	bucket string
	noun   string          // in error messages
	key    func(*T) string // the field the record is keyed by
}

var (
	devices = kind[DeviceRecord]{bucketDevices, "device", func(r *DeviceRecord) string { return r.Name }}
	leaves  = kind[LeafRecord]{bucketLeaves, "leaf", func(r *LeafRecord) string { return r.ID }}
	holders = kind[HolderRecord]{bucketHolders, "holder of", func(r *HolderRecord) string { return r.Device }}
)

func (k kind[T]) decode(key, v []byte) (T, error) {
	var r T
	if v == nil {
		return r, &RecordError{Bucket: k.bucket, Key: string(key), Err: errors.New("a nested bucket, not a record")}
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, &RecordError{Bucket: k.bucket, Key: string(key), Err: err}
	}
	if got := k.key(&r); got != string(key) {
		return r, &RecordError{Bucket: k.bucket, Key: string(key), Err: fmt.Errorf("the record is keyed %q but names %q", key, got)}
	}
	return r, nil
}

func (k kind[T]) get(tx *Tx, key string) (T, error) {
	var zero T
	b, err := tx.bucket(k.bucket)
	if err != nil {
		return zero, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return zero, fmt.Errorf("store: %s %q: %w", k.noun, key, ErrNotFound)
	}
	return k.decode([]byte(key), v)
}

func (k kind[T]) list(tx *Tx) ([]T, error) {
	b, err := tx.bucket(k.bucket)
	if err != nil {
		return nil, err
	}
	out := []T{}
	err = b.ForEach(func(key, v []byte) error {
		r, err := k.decode(key, v)
		out = append(out, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (k kind[T]) put(tx *Tx, r T) error {
	key := k.key(&r)
	if key == "" {
		return fmt.Errorf("store: put %s %q: %w: empty key", k.noun, key, ErrInvalid)
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: put %s %q: %w: %w", k.noun, key, ErrInvalid, err)
	}
	b, err := tx.bucket(k.bucket)
	if err != nil {
		return err
	}
	return putErr(b.Put([]byte(key), v), k.noun, key)
}

func (k kind[T]) delete(tx *Tx, key string) error {
	b, err := tx.bucket(k.bucket)
	if err != nil {
		return err
	}
	if b.Get([]byte(key)) == nil {
		if b.Bucket([]byte(key)) != nil {
			// A nested bucket where a record belongs: damage, which
			// deleting the record removes too.
			if err := b.DeleteBucket([]byte(key)); err != nil {
				return fmt.Errorf("store: delete %s %q: %w", k.noun, key, err)
			}
			return nil
		}
		return fmt.Errorf("store: delete %s %q: %w", k.noun, key, ErrNotFound)
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("store: delete %s %q: %w", k.noun, key, err)
	}
	return nil
}

// putErr wraps an error of bbolt's Put, marking bad keys and values as
// ErrInvalid.
func putErr(err error, noun, key string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrKeyRequired), errors.Is(err, berrors.ErrKeyTooLarge), errors.Is(err, berrors.ErrValueTooLarge):
		return fmt.Errorf("store: put %s %q: %w: %w", noun, key, ErrInvalid, err)
	}
	return fmt.Errorf("store: put %s %q: %w", noun, key, err)
}

// Devices returns every stored device, sorted by name (byte order).
func (tx *Tx) Devices() (_ []DeviceRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return devices.list(tx)
}

// Device returns the device called name, or an ErrNotFound error.
func (tx *Tx) Device(name string) (_ DeviceRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return devices.get(tx, name)
}

// PutDevice stores r under r.Name, replacing any record of that name.
func (tx *Tx) PutDevice(r DeviceRecord) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return devices.put(tx, r)
}

// DeleteDevice removes the device called name; ErrNotFound if there is
// none.
func (tx *Tx) DeleteDevice(name string) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return devices.delete(tx, name)
}

// Leaves returns every stored leaf, sorted by ID (byte order).
func (tx *Tx) Leaves() (_ []LeafRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return leaves.list(tx)
}

// Leaf returns the leaf with the given ID, or an ErrNotFound error.
func (tx *Tx) Leaf(id string) (_ LeafRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return leaves.get(tx, id)
}

// PutLeaf stores r under r.ID, replacing any record with that ID.
func (tx *Tx) PutLeaf(r LeafRecord) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return leaves.put(tx, r)
}

// DeleteLeaf removes the leaf with the given ID; ErrNotFound if there is
// none. Its poison list is kept: delete it with SetPoison(id, empty).
func (tx *Tx) DeleteLeaf(id string) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return leaves.delete(tx, id)
}

// Holders returns every stored claim, sorted by device (byte order).
func (tx *Tx) Holders() (_ []HolderRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return holders.list(tx)
}

// Holder returns the claim on device, or an ErrNotFound error.
func (tx *Tx) Holder(device string) (_ HolderRecord, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return holders.get(tx, device)
}

// PutHolder stores r under r.Device, replacing any claim on that device.
func (tx *Tx) PutHolder(r HolderRecord) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return holders.put(tx, r)
}

// DeleteHolder removes the claim on device; ErrNotFound if there is none.
func (tx *Tx) DeleteHolder(device string) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	return holders.delete(tx, device)
}

// Poison returns the poisoned sectors stored for a leaf: the emulated
// poison of a file leaf, the last badblocks seen for a device. A leaf with
// none gives the empty set.
func (tx *Tx) Poison(leafID string) (_ extent.Set, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	b, err := tx.bucket(bucketPoison)
	if err != nil {
		return extent.Set{}, err
	}
	v := b.Get([]byte(leafID))
	if v == nil {
		return extent.Set{}, nil
	}
	var s extent.Set
	if err := json.Unmarshal(v, &s); err != nil {
		return extent.Set{}, &RecordError{Bucket: bucketPoison, Key: leafID, Err: err}
	}
	return s, nil
}

// SetPoison replaces the poisoned sectors stored for a leaf; the empty set
// removes the leaf's key.
func (tx *Tx) SetPoison(leafID string, s extent.Set) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	if leafID == "" {
		return fmt.Errorf("store: set poison of leaf %q: %w: empty key", leafID, ErrInvalid)
	}
	b, err := tx.bucket(bucketPoison)
	if err != nil {
		return err
	}
	if s.Empty() {
		if err := b.Delete([]byte(leafID)); err != nil {
			return fmt.Errorf("store: clear poison of leaf %q: %w", leafID, err)
		}
		return nil
	}
	v, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("store: set poison of leaf %q: %w: %w", leafID, ErrInvalid, err)
	}
	return putErr(b.Put([]byte(leafID), v), "poison of leaf", leafID)
}

// AppendEvents adds evs to the event log with consecutive sequence
// numbers after the last one ever assigned, and returns copies of them
// with Seq set (the Seq of evs is ignored and evs is not changed). In a
// transaction that is rolled back the numbers are not used up.
func (tx *Tx) AppendEvents(evs []rmapchain.Event) (_ []rmapchain.Event, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	if len(evs) == 0 {
		return nil, nil
	}
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return nil, err
	}
	out := make([]rmapchain.Event, len(evs))
	for i, ev := range evs {
		seq, err := b.NextSequence()
		if err != nil {
			return nil, fmt.Errorf("store: append event: %w", err)
		}
		ev.Seq = seq
		v, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("store: append event %d: %w: %w", seq, ErrInvalid, err)
		}
		if err := putErr(b.Put(seqKey(seq), v), "event", strconv.FormatUint(seq, 10)); err != nil {
			return nil, err
		}
		out[i] = ev
	}
	return out, nil
}

// Events calls fn with every stored event whose Seq is greater than
// since, in order, and stops at the first error fn returns, which it
// returns unchanged. fn runs inside the transaction: keep it short, and
// do not let it write to the event log. To follow the
// log, remember the last Seq seen and pass it as since next time.
func (tx *Tx) Events(since uint64, fn func(rmapchain.Event) error) (err error) {
	inFn := false
	defer tx.guard(&err, debug.SetPanicOnFault(true), &inFn)
	return tx.events(since, fn, nil, &inFn)
}

// events walks the log; damaged records stop it, or, with skip set, are
// handed to skip and passed over.
func (tx *Tx) events(since uint64, fn func(rmapchain.Event) error, skip func(*RecordError), inFn *bool) error {
	if since == math.MaxUint64 {
		return nil
	}
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.Seek(seqKey(since + 1)); k != nil; k, v = c.Next() {
		ev, err := decodeEvent(k, v)
		if err != nil {
			var re *RecordError
			if skip != nil && errors.As(err, &re) {
				skip(re)
				continue
			}
			return err
		}
		*inFn = true
		err = fn(ev)
		*inFn = false
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeEvent(k, v []byte) (rmapchain.Event, error) {
	var ev rmapchain.Event
	if len(k) != 8 {
		return ev, &RecordError{Bucket: bucketEvents, Key: fmt.Sprintf("%x", k), Err: fmt.Errorf("key of %d bytes, not 8", len(k))}
	}
	seq := binary.BigEndian.Uint64(k)
	key := strconv.FormatUint(seq, 10)
	if v == nil {
		return ev, &RecordError{Bucket: bucketEvents, Key: key, Err: errors.New("a nested bucket, not an event")}
	}
	if err := json.Unmarshal(v, &ev); err != nil {
		return ev, &RecordError{Bucket: bucketEvents, Key: key, Err: err}
	}
	if ev.Seq != seq {
		return ev, &RecordError{Bucket: bucketEvents, Key: key, Err: fmt.Errorf("the event says seq %d", ev.Seq)}
	}
	return ev, nil
}

// LastSeq returns the Seq of the last event ever appended, 0 if none;
// trimming does not lower it.
func (tx *Tx) LastSeq() (_ uint64, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return 0, err
	}
	return b.Sequence(), nil
}

// TrimEvents deletes old events, keeping those with the keepLast highest
// sequence numbers ever assigned (Seq > LastSeq-keepLast); TrimEvents(0)
// empties the log. Sequence numbers are never reused.
func (tx *Tx) TrimEvents(keepLast uint64) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return err
	}
	last := b.Sequence()
	if last <= keepLast {
		return nil
	}
	cut := seqKey(last - keepLast)
	// Collect first: deleting while a cursor walks the bucket can skip keys.
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, cut) <= 0; k, _ = c.Next() {
		doomed = append(doomed, bytes.Clone(k))
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("store: trim events: %w", err)
		}
	}
	return nil
}

// Meta returns a copy of the engine setting stored under key, or an
// ErrNotFound error. The key "schema" holds the schema version.
func (tx *Tx) Meta(key string) (_ []byte, err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	b, err := tx.bucket(bucketMeta)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// SetMeta stores a small engine setting under key; a nil v deletes it.
// The key "schema" is reserved (ErrInvalid).
func (tx *Tx) SetMeta(key string, v []byte) (err error) {
	defer tx.guard(&err, debug.SetPanicOnFault(true), nil)
	switch key {
	case "":
		return fmt.Errorf("store: set meta %q: %w: empty key", key, ErrInvalid)
	case schemaKey:
		return fmt.Errorf("store: set meta %q: %w: the key is reserved for the schema version", key, ErrInvalid)
	}
	b, err := tx.bucket(bucketMeta)
	if err != nil {
		return err
	}
	if v == nil {
		if err := b.Delete([]byte(key)); err != nil {
			return fmt.Errorf("store: delete meta %q: %w", key, err)
		}
		return nil
	}
	return putErr(b.Put([]byte(key), bytes.Clone(v)), "meta", key)
}
