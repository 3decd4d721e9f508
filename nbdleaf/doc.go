// Package nbdleaf makes an NBD export a leaf of daxstack stacks: a leaf on
// another machine, reached with the nbd package's client, whose bad
// ranges and losses travel up the stacks like those of a local pmem leaf.
//
// There are four nouns. An Opener holds what every NBD leaf shares: the
// TLS configuration for nbds://, the number of connections, how often a
// daxstack server's bad ranges are polled (Poll, the daemon's --nbd-poll)
// and how long a leaf may go without a connection before it is lost
// (Grace, --nbd-grace), and the callbacks that hear of poison changes
// (OnPoison) and of losses and returns (OnLost). A Leaf is one export: a
// canonical URI (Ref, the reference tables print; ID is "nbd:" and the
// URI), a size in 512-byte sectors, ReadAt and WriteAt in bytes with
// io.ReaderAt/io.WriterAt semantics, WriteAtFUA, Sync (NBD_CMD_FLUSH),
// WriteZeroes and Discard (when the server offers them), a poison list,
// and a lost state. An Identity says whether the export that answers
// later is the one that was recorded: the URI, the export's size and its
// description (daxstack's server sends the device's UUID there). *Leaf
// implements stack.Leaf and the BadBlocks and Lost methods the reverse
// map uses, as *dax.Leaf does, without importing either. A Cred is a
// peer's credentials, for the access rule (see Access).
//
// # References
//
// URIs in qemu's syntax (nbd.ParseURI): nbd://HOST[:PORT]/EXPORT,
// nbd+unix:///EXPORT?socket=PATH, and nbds:// or nbds+unix:// for TLS
// (NBD_OPT_STARTTLS with crypto/tls; ClientTLS reads the same certificate,
// key and CA files as the server side). IsRef tells an NBD reference from
// a path; Canonical gives the one spelling a table stores (a unix socket's
// path must be absolute).
//
// # Opening
//
// Opener.Open dials: a table that names an export for the first time needs
// its size. Opener.Lazy makes the leaf of a recorded Identity without
// dialling, with the recorded size, so that listing or printing tables
// never waits on a server; its first I/O dials (Watch dials at once, in
// the background). Every connection's export is checked against the
// identity: another one (IdentityError) is never used.
//
// # Connections
//
// A leaf keeps Conns connections (2 by default, at most 4) to a server
// that advertises NBD_FLAG_CAN_MULTI_CONN, one to any other (without the
// flag, a flush on one connection does not cover writes made on another).
// Each connection has many requests in flight at once, with structured
// replies; requests take the connections in turn. A connection that
// breaks, or leaves a request unanswered for IOTimeout, is dropped, its
// requests go again on another, and it is dialled again with backoff.
// When none is left a grace timer runs: if no connection is back within
// Grace the leaf is lost (Lost, LostReason, OnLost(true)); I/O then fails
// at once with a *LostError (syscall.ENXIO). Reconnection goes on, and a
// connection to the same export restores the leaf (OnLost(false)). A
// different export behind the address is never used: it makes a leaf
// without connections lost at once, with an *IdentityError as the reason,
// until the recorded export answers again. SetLost is the engine's own verdict: it closes the connections and
// nothing dials until SetLost(false).
//
// Durability is NBD's: WriteAtFUA sends NBD_CMD_FLAG_FUA (or a flush on the
// same connection when the server has no FUA), Sync sends NBD_CMD_FLUSH on
// the connections that took writes since their last flush. A connection
// that breaks holding writes no flush covered makes the next Sync fail
// with ErrUnflushed (syscall.EIO): the server may have lost them.
//
// # Poison
//
// Poison is a set of bad sectors and behaves as on pmem: a read that
// touches one reads the bytes before it and fails with a *PoisonError
// (syscall.EIO) naming the first bad extent; a write that covers bad
// sectors whole clears them when it succeeds; one that covers a bad
// sector in part fails and writes nothing. Sectors join the set in two
// ways. A request the server fails with NBD_EIO is sent again in halves,
// down to single sectors (or the server's minimum block): the sectors
// that keep failing are bad; a failure the retry cures is logged and not
// recorded. And a server that offers the meta context daxstack:badblocks
// (another daxstack) has its bad ranges read every Poll: its list is then
// the leaf's (PoisonSource "remote"), changes are reported to OnPoison,
// and so a bad range crosses machines. Without it the list is the leaf's
// own (PoisonSource "emulated"): the engine saves it and gives it back
// with SetPoison.
//
// # Access
//
// CheckAccess applies the daemon's rule for a peer naming a URI: root
// anything; anyone else only a unix socket they could connect to
// themselves (search on every directory, write on the socket), checked by
// the kernel with the peer's credentials (PeerCred reads them from the
// daemon's socket). A leaf opened for a peer dials as that peer (DialAs),
// reconnections included.
//
// # What the engine calls
//
// One Opener per engine: TLSConfig from ClientTLS with the server side's
// certificate, key and CA flags; Poll and Grace from --nbd-poll and
// --nbd-grace; OnPoison into the queue dax leaves' changes go to (keyed by
// Leaf.ID); OnLost to record the leaf lost (or back) with Lost (Restored)
// events over the whole leaf but its poison. Then, in the leaf opener:
//
//   - IsRef(ref) sends a reference here; Canonical(ref) is the key to
//     look its record up by (Ref and Path are the canonical URI, ID is
//     IDPrefix and it, Kind "nbd", Size in sectors, Identity the JSON of
//     Leaf.Identity, which ParseIdentity reads back and Identity.Same
//     compares: never dax.Identity).
//   - A non-root peer: CheckAccess(ref, cred) first (cred from PeerCred on
//     the daemon's socket), and the leaf opened with that cred so that it
//     dials as the peer.
//   - A recorded leaf: Lazy(identity, cred), which never dials by itself,
//     so ls, table and info never wait on a server; the daemon then calls
//     Watch. A new one: Open(ctx, ref, cred), which dials for the size.
//   - PoisonSource "emulated": SetPoison(saved list) after opening. A
//     record that says lost: AssumeLost, before Watch.
//   - The daemon's rescan needs no probe for NBD leaves (OnLost reports
//     returns); a probe, where wanted, is Open and Identity().Same.
//     offline is SetLost(true), a restore by hand SetLost(false).
//   - I/O handles: ReadAt, WriteAt, WriteAtFUA, Sync, WriteZeroes and
//     Discard (an error matching ErrUnsupported means: write zeroes
//     instead, or skip the discard). Close when no table uses the leaf.
//
// A Leaf is safe for concurrent use.
package nbdleaf
