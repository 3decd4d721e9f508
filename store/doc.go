// Package store is daxstack's persistence: every mapped device's tables,
// the leaves those tables use, their emulated poison, the holders' claims
// and the failure-event log, in one bbolt file (DefaultPath unless the
// caller says otherwise).
//
// There are only a few types: DB is an open database file; Tx is one bbolt
// transaction on it, read-only (DB.View) or read-write (DB.Update); and a
// record type per bucket, DeviceRecord, LeafRecord and HolderRecord, stored
// as JSON, with poison stored as an extent.Set and events as
// rmapchain.Event. Each command of the control engine is one Update: the
// function either returns nil and everything it wrote is committed (and
// fsynced) together, or returns an error and nothing at all is written, so a
// refused command leaves the file byte-for-byte as it was.
//
// It is a package of its own so that nothing above it needs to know about
// bbolt, buckets, key encodings or schema versions, and nothing below it
// (stack, rmapchain) needs to know there is a disk: the engine moves values
// between the pool and these records, and this package is the only code
// that touches the file.
//
// # Schema
//
// Version 1 (SchemaVersion), all root buckets, keys as raw bytes:
//
//	daxstack.db
//	├── meta/
//	│   ├── "schema" → uint64, big-endian (1)
//	│   └── <key>    → engine setting, opaque bytes (Tx.Meta, Tx.SetMeta)
//	├── devices/
//	│   └── <device name> → DeviceRecord, JSON
//	├── leaves/
//	│   └── <leaf ID>     → LeafRecord, JSON
//	├── poison/
//	│   └── <leaf ID>     → extent.Set, JSON ([{"offset":..,"length":..}]);
//	│                       no key when the leaf has no poison
//	├── holders/
//	│   └── <device or leaf reference> → HolderRecord, JSON
//	└── events/           (bucket sequence = last Seq ever assigned)
//	    └── <Seq, uint64 big-endian> → rmapchain.Event, JSON
//
// Tables are stored as the text dmsetup prints, so a person can read the
// file with any bbolt tool and the engine re-parses it on load. The schema
// version is checked on every Open: a file written by a newer daxstack is
// refused (ErrSchemaTooNew) rather than misread, and a new file gets the
// version and all buckets in one transaction. Opening an existing file
// never writes to it.
//
// # Locking
//
// bbolt takes an flock on the file for as long as a DB is open: exclusive
// for a read-write open, shared for Options.ReadOnly. Read-only opens share
// with each other; any other pair conflicts, and the later Open gives up
// after Options.Timeout with ErrLocked. The daemon holds the file open for
// its lifetime, so the CLI talks to the daemon instead of opening the file
// while it runs; without the daemon each command opens the file for its
// own duration only.
//
// # Caveats
//
// A Tx is valid only inside the function given to View or Update; records
// returned from it are copies and stay valid. Never hold a transaction
// across device I/O, udev waits, sleeps or anything else slow: an open
// read transaction blocks a writer that must grow the memory map, and a
// write transaction blocks every other writer. Copy what you need, return,
// then do the I/O. Do not call View or Update from inside another
// transaction's function: bbolt can deadlock.
package store
