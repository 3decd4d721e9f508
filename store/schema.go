package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the layout described in the package doc,
// the newest this package reads and the one it writes into new files.
const SchemaVersion uint64 = 1

// Root bucket names.
const (
	bucketMeta    = "meta"
	bucketDevices = "devices"
	bucketLeaves  = "leaves"
	bucketPoison  = "poison"
	bucketHolders = "holders"
	bucketEvents  = "events"
)

// schemaKey is the key of the schema version in the meta bucket.
const schemaKey = "schema"

// buckets are the root buckets of SchemaVersion, in the order they are
// created and checked.
var buckets = []string{bucketMeta, bucketDevices, bucketLeaves, bucketPoison, bucketHolders, bucketEvents}

// schemaState is what checkSchema found.
type schemaState int

const (
	schemaOK    schemaState = iota // version SchemaVersion, every bucket present
	schemaEmpty                    // a bbolt file with no buckets at all: never initialised
)

// checkSchema reads the schema version and checks the buckets, without
// writing. An empty bbolt file (one whose initialisation was interrupted
// after bbolt wrote its meta pages) reports schemaEmpty; a file of someone
// else's, or a damaged one, ErrCorrupt; a newer one, ErrSchemaTooNew.
func checkSchema(tx *bolt.Tx, path string) (schemaState, error) {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return schemaEmpty, nil
		}
		return 0, fmt.Errorf("store: %s: %w: not a daxstack database (no %q bucket)", path, ErrCorrupt, bucketMeta)
	}
	v := meta.Get([]byte(schemaKey))
	switch {
	case v == nil:
		return 0, fmt.Errorf("store: %s: %w: no schema version", path, ErrCorrupt)
	case len(v) != 8:
		return 0, fmt.Errorf("store: %s: %w: schema version is %d bytes, not 8", path, ErrCorrupt, len(v))
	}
	ver := binary.BigEndian.Uint64(v)
	switch {
	case ver > SchemaVersion:
		return 0, fmt.Errorf("store: %s: %w: the file has schema version %d, this daxstack knows versions up to %d; use a newer daxstack",
			path, ErrSchemaTooNew, ver, SchemaVersion)
	case ver != SchemaVersion:
		return 0, fmt.Errorf("store: %s: %w: unknown schema version %d", path, ErrCorrupt, ver)
	}
	for _, name := range buckets {
		if tx.Bucket([]byte(name)) == nil {
			return 0, fmt.Errorf("store: %s: %w: schema version %d but no %q bucket", path, ErrCorrupt, ver, name)
		}
	}
	return schemaOK, nil
}

// initSchema creates the buckets of SchemaVersion and records the version.
func initSchema(tx *bolt.Tx) error {
	for _, name := range buckets {
		if _, err := tx.CreateBucket([]byte(name)); err != nil {
			return fmt.Errorf("store: create bucket %q: %w", name, err)
		}
	}
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(schemaKey), seqKey(SchemaVersion))
}

// seqKey encodes n as 8 bytes big-endian, so keys sort as numbers.
func seqKey(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}
