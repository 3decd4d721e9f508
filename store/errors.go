package store

import (
	"errors"
	"fmt"
)

// Errors returned when opening a database.
var (
	// ErrLocked is returned by Open when another process (or another DB in
	// this process) holds a conflicting lock on the file for longer than
	// Options.Timeout. It wraps bbolt's errors.ErrTimeout.
	ErrLocked = errors.New("database is locked by another daxstack process")

	// ErrSchemaTooNew is returned by Open when the file's schema version is
	// newer than SchemaVersion: it was written by a newer daxstack, and this
	// one refuses to read or change it.
	ErrSchemaTooNew = errors.New("database schema is newer than this daxstack understands")

	// ErrNotFile is returned by Open when the path names a directory
	// (the error then also matches syscall.EISDIR), a FIFO, a socket or
	// a device rather than a regular file.
	ErrNotFile = errors.New("not a regular file")
)

// Errors returned by Open and by transactions.
var (
	// ErrNotFound is returned when a record asked for by key does not exist,
	// and by a read-only Open of a file that does not exist or was never
	// initialised.
	ErrNotFound = errors.New("not found")

	// ErrCorrupt is returned when the file or a record in it does not decode:
	// not a bbolt file, a truncated or damaged one (a *CorruptFileError
	// saying where), no or a malformed schema version, a missing bucket,
	// a value that is not the JSON of its record type, or a record whose key
	// disagrees with its contents (a *RecordError). Every View and Update
	// of a DB that met damage inside bbolt returns it (see DB.Broken).
	ErrCorrupt = errors.New("corrupt database")

	// ErrInvalid is returned when a record cannot be stored: an empty or
	// oversized key, a reserved meta key, or a value that does not encode.
	ErrInvalid = errors.New("invalid record")

	// ErrReadOnly is returned by Update on a DB opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("database is open read-only")
)

// RecordError reports a stored value that does not decode. It matches
// ErrCorrupt with errors.Is and unwraps to the decoding error.
type RecordError struct {
	Bucket string // root bucket: "devices", "leaves", "poison", "holders", "events", "meta"
	Key    string // the key, printable (an event's key as its decimal Seq)
	Err    error  // what is wrong with it
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("store: %s/%q: %v: %v", e.Bucket, e.Key, ErrCorrupt, e.Err)
}

// Is reports whether target is ErrCorrupt.
func (e *RecordError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the decoding error.
func (e *RecordError) Unwrap() error { return e.Err }
