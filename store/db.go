package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
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
	file     *os.File // bbolt's descriptor, opened by Open's openFile
	info     fileInfo // what the check at Open found

	wmu       sync.Mutex             // held by Update, and by a re-check of the file
	stamp     atomic.Pointer[stamp]  // the file as this DB last left it
	failMu    sync.Mutex             // orders the setting of brokenErr and broken
	brokenErr error                  // the error every call returns once broken; set before broken
	broken    atomic.Pointer[string] // set once: why the DB is unusable
}

// stamp is what changes when a file is written to: an Update of this DB,
// or another program writing behind its back.
type stamp struct {
	size  int64
	mtime int64 // ns
}

func stampOf(f *os.File) (stamp, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return stamp{}, err
	}
	return stamp{size: st.Size, mtime: st.Mtim.Nano()}, nil
}

// Open opens the database at path, creating it (and its parent directory,
// mode 0700) with mode 0600 if it does not exist and ReadOnly is not set,
// and checks it: the whole file as bbolt will read it (see verify.go),
// then its schema version. A zero-length file gets its buckets and schema
// version in one transaction, as does a file bbolt initialised but never
// wrote to; an existing file is not written to.
//
// Possible errors: ErrLocked (another process holds the lock for longer
// than Options.Timeout), ErrSchemaTooNew, ErrCorrupt (not a bbolt file, a
// damaged or truncated one — a *CorruptFileError saying where —, or not a
// daxstack one), ErrNotFile (a directory or another kind of file),
// ErrNotFound (ReadOnly and no initialised file), or the operating
// system's error.
func Open(path string, o Options) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("store: open: %w: empty database path", ErrInvalid)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if err := regular(path, fi); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if o.ReadOnly {
		// bbolt would try to initialise an empty file, and cannot on a
		// read-only descriptor; say plainly that there is no database.
		if err != nil {
			return nil, fmt.Errorf("store: open %s read-only: database %w: %w", path, ErrNotFound, err)
		}
		if fi.Size() == 0 {
			return nil, fmt.Errorf("store: open %s read-only: database %w: the file is empty", path, ErrNotFound)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	db := &DB{path: path, readOnly: o.ReadOnly}
	// bbolt opens the file through this: it is locked and checked here,
	// before bbolt reads a byte of it. bbolt then takes the same lock on
	// the same descriptor, which succeeds at once.
	openFile := func(name string, flag int, mode os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag|unix.O_NONBLOCK, mode) // a FIFO must not block the open
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err == nil {
			err = regular(path, fi)
		}
		if err == nil {
			err = lockFile(f, !o.ReadOnly, timeout, path)
		}
		if err == nil {
			fi, err = f.Stat() // the size under the lock
		}
		if err == nil {
			db.info, err = verifyFile(f, fi.Size(), path)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		db.file = f
		return f, nil
	}
	bdb, err := openBolt(path, &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true, // rebuilt by a scan on open; a damaged freelist cannot corrupt the file
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       o.ReadOnly,
		OpenFile:       openFile,
	})
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrLocked), errors.Is(err, ErrNotFile):
		return nil, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("store: %s: %w: not a usable bbolt file: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.bolt = bdb
	db.restamp()
	if err := db.checkOrInit(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openBolt is bolt.Open with a panic or a fault inside it (which the
// check before should make impossible) turned into ErrCorrupt.
func openBolt(path string, o *bolt.Options) (bdb *bolt.DB, err error) {
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			bdb, err = nil, &CorruptFileError{Path: path, Page: -1, Detail: "bbolt failed opening it: " + panicText(r)}
		}
	}(debug.SetPanicOnFault(true))
	return bolt.Open(path, 0o600, o)
}

// regular refuses a path that is not a regular file.
func regular(path string, fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		return fmt.Errorf("store: %s is a directory, not a database file: %w (%w)", path, ErrNotFile, syscall.EISDIR)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store: %s is not a regular file (%s): %w", path, fileType(fi.Mode()), ErrNotFile)
	}
	return nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// lockFile takes the flock bbolt would (exclusive, or shared for a
// read-only open), polling every 50 ms as bbolt does until timeout.
func lockFile(f *os.File, exclusive bool, timeout time.Duration, path string) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	start := time.Now()
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err != unix.EWOULDBLOCK:
			return fmt.Errorf("store: lock %s: %w", path, err)
		case time.Since(start) > timeout-lockRetry:
			return fmt.Errorf("store: %s: %w (gave up after %v: %w)", path, ErrLocked, timeout, berrors.ErrTimeout)
		}
		time.Sleep(lockRetry)
	}
}

const lockRetry = 50 * time.Millisecond

// checkOrInit checks the schema in a read transaction, which writes
// nothing, and initialises a file that has no buckets yet in one write
// transaction, if it is one nothing was ever written to.
func (db *DB) checkOrInit() error {
	var state schemaState
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		state, err = checkSchema(tx, db.path)
		return err
	})
	if err != nil || state == schemaOK {
		return err
	}
	if !db.info.fresh() {
		return fmt.Errorf("store: %s: %w: a bbolt file with no buckets, but %d of its %d pages hold something nothing reaches (transaction %d): not starting over on it",
			db.path, ErrCorrupt, db.info.unknown, db.info.hwm, db.info.txid)
	}
	if db.readOnly {
		return fmt.Errorf("store: open %s read-only: database %w: the file was never initialised", db.path, ErrNotFound)
	}
	err = db.update(func(tx *bolt.Tx) error {
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

// Broken returns nil while the DB is usable, and otherwise the error
// every View and Update now returns (matching ErrCorrupt): bbolt faulted
// or panicked reading the file, or the file was changed by another
// program while open. Such a DB cannot be used again; close it, and open
// the file again, which checks it whole.
func (db *DB) Broken() error {
	if db.broken.Load() == nil {
		return nil
	}
	return db.brokenErr
}

// closeWait bounds Close of a broken DB: a panic inside bbolt at the start
// of a transaction can leave one of its locks held, and its Close would
// then wait forever.
const closeWait = 2 * time.Second

// Close waits for open transactions to end, then releases the file and
// its lock. On a broken DB it waits at most a couple of seconds: if bbolt
// is stuck (see Broken), Close says so and the file stays locked until
// the process exits.
func (db *DB) Close() error {
	if db.broken.Load() == nil {
		if err := db.bolt.Close(); err != nil {
			return fmt.Errorf("store: close %s: %w", db.path, err)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- db.bolt.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store: close %s: %w", db.path, err)
		}
		return nil
	case <-time.After(closeWait):
		return fmt.Errorf("store: close %s: bbolt is stuck after %s; the file stays locked until this process exits", db.path, *db.broken.Load())
	}
}

// fail makes the DB unusable after bbolt faulted or panicked (r), or the
// file proved damaged (err, when r is nil), and returns the error every
// call now returns. The first failure is the one reported.
func (db *DB) fail(r any, err error) error {
	var why string
	if r != nil {
		why = "bbolt failed reading the file: " + panicText(r)
		err = &CorruptFileError{Path: db.path, Page: -1, Detail: why + "; the database was closed to further use: open it again"}
	} else {
		why = err.Error()
	}
	db.failMu.Lock()
	if db.broken.Load() == nil {
		db.brokenErr = err
		db.broken.Store(&why)
	}
	db.failMu.Unlock()
	return db.brokenErr
}

func panicText(r any) string {
	if a, ok := r.(interface{ Addr() uintptr }); ok {
		return fmt.Sprintf("%v (a read of the mapped file faulted at %#x: the file was cut short or damaged while open)", r, a.Addr())
	}
	return fmt.Sprint(r)
}

// restamp records the file as this DB leaves it.
func (db *DB) restamp() {
	if st, err := stampOf(db.file); err == nil {
		db.stamp.Store(&st)
	}
}

// checkFile makes sure the file is as this DB last left it before a
// transaction starts: another program that wrote to it (or cut it short)
// while it is open leaves bbolt with a map and a freelist that no longer
// match the file, and the next read could fault or the next commit
// overwrite live pages. Such a DB is broken: the file is checked again
// to say what is wrong with it, and the DB is not used any more. locked
// says the caller holds wmu.
func (db *DB) checkFile(locked bool) error {
	if err := db.Broken(); err != nil {
		return err
	}
	st, err := stampOf(db.file)
	if err != nil {
		return fmt.Errorf("store: %s: %w", db.path, err)
	}
	if st == *db.stamp.Load() {
		return nil
	}
	if !locked {
		// Perhaps an Update of ours is committing: wait for it.
		db.wmu.Lock()
		defer db.wmu.Unlock()
		if st, err = stampOf(db.file); err != nil {
			return fmt.Errorf("store: %s: %w", db.path, err)
		}
		if st == *db.stamp.Load() {
			return nil
		}
	}
	if err := db.Broken(); err != nil {
		return err
	}
	old := *db.stamp.Load()
	if _, verr := verifyFile(db.file, st.size, db.path); verr != nil {
		var ce *CorruptFileError
		if errors.As(verr, &ce) {
			c := *ce
			c.Detail = "changed by another program while open, and now " + c.Detail
			verr = &c
		}
		return db.fail(nil, verr)
	}
	return db.fail(nil, &CorruptFileError{Path: db.path, Page: -1, Detail: fmt.Sprintf(
		"the file was changed by another program while open (%d bytes modified at %s, now %d bytes modified at %s); the database was closed to further use: open it again",
		old.size, time.Unix(0, old.mtime).UTC().Format(time.RFC3339Nano), st.size, time.Unix(0, st.mtime).UTC().Format(time.RFC3339Nano))})
}

// run runs a bbolt transaction with faults made panics (SetPanicOnFault),
// and turns a panic inside bbolt into ErrCorrupt, breaking the DB. A
// panic of the caller's own function (inFn set when it began) goes on.
func (db *DB) run(write bool, fn func(*bolt.Tx) error, inFn *bool) (err error) {
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if inFn != nil && *inFn {
				panic(r)
			}
			err = db.fail(r, nil)
		}
	}(debug.SetPanicOnFault(true))
	if write {
		return db.bolt.Update(fn)
	}
	return db.bolt.View(fn)
}

// view and update are the guarded transactions of the store's own code.
func (db *DB) view(fn func(*bolt.Tx) error) error {
	if err := db.checkFile(false); err != nil {
		return err
	}
	return db.run(false, fn, nil)
}

func (db *DB) update(fn func(*bolt.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if err := db.checkFile(true); err != nil {
		return err
	}
	defer db.restamp()
	return db.run(true, fn, nil)
}

// View runs fn in a read-only transaction and returns its error. The Tx
// is valid only until fn returns. Keep fn short: no device I/O, sleeps or
// waits inside it (see the package doc). On a broken DB (see Broken) it
// returns that error without calling fn.
func (db *DB) View(fn func(*Tx) error) error {
	if err := db.checkFile(false); err != nil {
		return err
	}
	tx := &Tx{db: db}
	var fnErr error
	err := db.run(false, func(btx *bolt.Tx) error {
		tx.tx, tx.inFn = btx, true
		fnErr = fn(tx)
		tx.inFn = false
		return fnErr
	}, &tx.inFn)
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		return fmt.Errorf("store: %s: read transaction: %w", db.path, err)
	}
	return nil
}

// Update runs fn in one read-write transaction. If fn returns nil the
// transaction is committed and synced to disk before Update returns; if fn
// returns an error (or panics) everything it wrote is discarded, nothing
// reaches the file, and Update returns fn's error unchanged. A transaction
// in which the store met damage (an error matching ErrCorrupt that broke
// the DB) is never committed, even if fn returns nil. Writers are
// serialised; keep fn short, as for View.
func (db *DB) Update(fn func(*Tx) error) error {
	if db.readOnly {
		return fmt.Errorf("store: %s: %w", db.path, ErrReadOnly)
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if err := db.checkFile(true); err != nil {
		return err
	}
	defer db.restamp()
	tx := &Tx{db: db}
	var fnErr error
	err := db.run(true, func(btx *bolt.Tx) error {
		tx.tx, tx.inFn = btx, true
		fnErr = fn(tx)
		tx.inFn = false
		if fnErr == nil {
			fnErr = db.Broken() // damage met inside: roll back
		}
		return fnErr
	}, &tx.inFn)
	if fnErr != nil {
		return fnErr // rolled back
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		return fmt.Errorf("store: %s: commit: %w", db.path, err)
	}
	return nil
}
