// Package control is daxstack's engine: the one place where state
// changes, used by the CLI directly (embedded mode) and by the daemon
// (which then is the only writer).
//
// There are a few nouns. API is the engine as a Go interface, one method
// per command with typed requests and results; *Engine implements it in
// this process, *Local for a command-line process (an engine opened for
// each call), and service.Client through the daemon's socket, so the CLI
// is written once. A Handle is an open device: byte-addressed I/O through
// its stack (reads, writes, write-zeroes, discards, flushes), safe for
// many goroutines. Hooks and Watch are what the daemon's exports hold on
// to: lifecycle changes after each commit, and what to do before a device
// is removed or suspended.
//
// The model: an Engine owns an open store (bbolt) and a stack.Pool built
// from it once, when it opens (every stored table parsed and built, its
// targets given their saved state), and keeps that pool for as long as it
// is open: I/O in flight, parked requests, open handles and targets' state
// all live in it. A command that changes state runs under the engine's
// lock, changes the pool (where the kernel's validation happens) inside a
// stack.Txn, notes every record it touched and the events its change
// caused, and writes them in ONE store transaction. If it is refused, the
// transaction fails or it panics, the pool's changes and the engine's own
// are undone: nothing is written, and every run-time structure is as it
// was; nothing is ever rebuilt from the store. One refusal changes
// something on purpose, as dmsetup's does: remove with Force replaces the
// device's table with an error table first (lvm2's test library relies
// on it to fail a device under its users), and that stands, committed,
// when the removal is then refused because the device is busy. A command that changed
// nothing writes nothing, so a write through a handle commits only when it
// changed recorded state (poison it cleared, a target's state).
//
// Waiting never holds the engine's lock: a suspend (or a resume that swaps
// tables, or a remove) stops its device's I/O and waits for the I/O in
// flight outside it, one such command per device at a time, so that a
// slow device (a delay target, a request parked below) never stops other
// devices' commands. Every wait ends with the command's context.
//
// Leaves that cannot be opened, or that have changed identity since they
// were recorded, stand in the pool as lost placeholders: the devices above
// them are degraded, their bad ranges cover everything the lost leaf backs,
// and nothing is deleted. A leaf that comes back (a rescan) takes its
// placeholder's place under the same tables; a block device found at
// another number (a loop device re-attached, by its backing file) keeps
// the ID it was first recorded under, and the tables that name it are
// stored again with its new number. A leaf that got smaller under its
// tables keeps its recorded size: the sectors past its new end are bad
// sectors of it, translated up and reported by rescans (media errors, and
// cleared when it grows back), and its users are degraded.
//
// Commands run for whoever the context names (WithPeer; the daemon names
// each client): a peer that is not root may make the engine use only
// leaves it could open itself (peer.go). Block-device leaves are claimed:
// the daemon's engine holds each one open with O_EXCL while a table uses
// it, so nothing mounts it underneath; an embedded command only checks
// that nobody mounted or holds it when it opens it (claims.go).
package control
