// Package control is the single place where daxstack state changes: the
// engine behind every command, used by the CLI directly (embedded mode) and
// by the daemon (which then is the only writer).
//
// It exists as its own package because the CLI and the daemon must behave
// identically: both call an Engine, and an Engine is the only code that
// touches the store, the pool and the leaves together. The CLI parses and
// prints; the daemon adds sockets and watchers; neither holds mapping or
// store logic.
//
// The model: an Engine owns an open store (bbolt), a stack.Pool rebuilt
// from it (every stored table re-parsed), and the dax leaves those tables
// name. Each command is a method call (Call, with a Request for one of the
// named methods in api.go) that runs under the engine's lock. A command
// that changes state first changes the in-memory pool, where the kernel's
// validation happens, then writes every record it touched, and the events
// its change caused, in ONE store transaction. If validation or the
// transaction fails, nothing is written and the pool is rebuilt from the
// store, so a refused command leaves the database byte-for-byte as it was.
//
// Leaves that cannot be opened, or that have changed identity since they
// were recorded, stand in the pool as lost placeholders: the devices above
// them are degraded, their bad ranges cover everything the lost leaf backs,
// and nothing is deleted.
package control
