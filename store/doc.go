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
// # Damaged files
//
// bbolt trusts its file: it maps it, follows page ids and element offsets
// without bounds checks, and on a read-write open walks every page in a
// goroutine of its own that panics at the first inconsistency. A damaged
// or truncated file is then a SIGBUS or a panic nothing can recover. So
// Open locks the file and checks all of it that bbolt will read
// (verify.go: the meta page bbolt will use, the freelist, every reachable
// page and element, with the rules of bbolt's own Check) before bbolt
// sees it, and refuses it with a *CorruptFileError (ErrCorrupt) saying
// where it is damaged. Open never starts over on a file that holds
// anything: only a zero-length file, or one bbolt initialised and nothing
// was committed to, gets a new schema. A path that is a directory, a FIFO
// or a device is ErrNotFile.
//
// An open DB checks before each transaction that nobody else wrote to the
// file (its size and modification time are as the DB's own last commit
// left them); if someone did, the DB is broken. Every method of Tx runs
// with faults made panics (debug.SetPanicOnFault) and recovers a panic
// inside bbolt, as the last line: a page gone bad while open that the
// check could not see, a file cut short in the middle of a transaction.
// Either way the error matches ErrCorrupt, and a DB that met it is
// broken: bbolt's handle cannot be trusted after a panic inside it, so
// every later View and Update returns the same error (DB.Broken), an
// Update in which it happened is rolled back, and the file must be opened
// again, which checks it whole. A panic of the caller's own function is
// not damage and goes on to the caller.
//
// A record that does not decode is a *RecordError; the Scan methods
// (ScanDevices, ScanLeaves, ScanHolders, ScanEvents) list the records that
// decode and the damaged ones apart, so that one damaged record does not
// fail every command.
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
