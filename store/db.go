package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultPath is where the database lives unless the caller says
// otherwise (the CLI's flag and environment variable).
const DefaultPath = "/var/lib/daxstack/daxstack.db"

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Options are the options of Open. The zero value opens read-write and
// waits DefaultTimeout for the lock.
type Options struct {
	// Timeout is how long to wait for the file lock before failing with
	// ErrLocked; zero or negative means DefaultTimeout. bbolt polls the
	// lock every 50 ms, so Open gives up within 50 ms of Timeout.
	Timeout time.Duration

	// ReadOnly opens the file read-only with a shared lock, which other
	// read-only opens share and read-write opens conflict with. A missing
	// or never-initialised file is an ErrNotFound error rather than
	// created, and Update fails with ErrReadOnly.
	ReadOnly bool
}

// DB is an open database file. It is safe for concurrent use; bbolt
// serialises writers and lets readers run alongside them.
type DB struct {
	bolt     *bolt.DB
	path     string
	readOnly bool
}

// Open opens the database at path, creating it (and its parent directory,
// mode 0700) with mode 0600 if it does not exist and ReadOnly is not set,
// and checks its schema version. A new file gets its buckets and schema
// version in one transaction; an existing file is not written to.
//
// Possible errors: ErrLocked (another process holds the lock for longer
// than Options.Timeout), ErrSchemaTooNew, ErrCorrupt (not a bbolt file, or
// not a daxstack one), ErrNotFound (ReadOnly and no initialised file), or
// the operating system's error.
func Open(path string, o Options) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("store: open: %w: empty database path", ErrInvalid)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if o.ReadOnly {
		// bbolt would try to initialise an empty file, and cannot on a
		// read-only descriptor; say plainly that there is no database.
		fi, err := os.Stat(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("store: open %s read-only: database %w: %w", path, ErrNotFound, err)
			}
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		if fi.Size() == 0 {
			return nil, fmt.Errorf("store: open %s read-only: database %w: the file is empty", path, ErrNotFound)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true, // rebuilt by a scan on open; a damaged freelist cannot corrupt the file
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       o.ReadOnly,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: %s: %w (gave up after %v: %w)", path, ErrLocked, timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("store: %s: %w: not a usable bbolt file: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{bolt: bdb, path: path, readOnly: o.ReadOnly}
	if err := db.checkOrInit(); err != nil {
		bdb.Close()
		return nil, err
	}
	return db, nil
}

// checkOrInit checks the schema in a read transaction, which writes
// nothing, and initialises a file that has no buckets yet in one write
// transaction.
func (db *DB) checkOrInit() error {
	var state schemaState
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		state, err = checkSchema(tx, db.path)
		return err
	})
	if err != nil || state == schemaOK {
		return err
	}
	if db.readOnly {
		return fmt.Errorf("store: open %s read-only: database %w: the file was never initialised", db.path, ErrNotFound)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		// Check again under the write transaction: it is the same file
		// and the same lock, but checking costs nothing.
		if state, err := checkSchema(tx, db.path); err != nil || state == schemaOK {
			return err
		}
		return initSchema(tx)
	})
	if err != nil {
		return fmt.Errorf("store: initialise %s: %w", db.path, err)
	}
	return nil
}

// Path returns the path the database was opened with.
func (db *DB) Path() string { return db.path }

// Close waits for open transactions to end, then releases the file and
// its lock.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", db.path, err)
	}
	return nil
}

// View runs fn in a read-only transaction and returns its error. The Tx
// is valid only until fn returns. Keep fn short: no device I/O, sleeps or
// waits inside it (see the package doc).
func (db *DB) View(fn func(*Tx) error) error {
	var fnErr error
	err := db.bolt.View(func(btx *bolt.Tx) error {
		fnErr = fn(&Tx{tx: btx})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: %s: read transaction: %w", db.path, err)
	}
	return nil
}

// Update runs fn in one read-write transaction. If fn returns nil the
// transaction is committed and synced to disk before Update returns; if fn
// returns an error (or panics) everything it wrote is discarded, nothing
// reaches the file, and Update returns fn's error unchanged. Writers are
// serialised; keep fn short, as for View.
func (db *DB) Update(fn func(*Tx) error) error {
	if db.readOnly {
		return fmt.Errorf("store: %s: %w", db.path, ErrReadOnly)
	}
	var fnErr error
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		fnErr = fn(&Tx{tx: btx})
		return fnErr
	})
	if fnErr != nil {
		return fnErr // rolled back
	}
	if err != nil {
		return fmt.Errorf("store: %s: commit: %w", db.path, err)
	}
	return nil
}
