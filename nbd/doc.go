// Package nbd speaks the Network Block Device protocol (doc/proto.md of
// the NetworkBlockDevice/nbd repository), server and client side by
// side, with the spec's own names beside its wire values (proto.go).
//
// There are few nouns, each one of the spec's:
//
//   - A Server serves the exports of an Exports directory to the clients
//     that connect to it: Serve runs the accept loop of one listener
//     (unix socket or TCP), one goroutine per connection. Each connection
//     is a session: the fixed newstyle handshake (option haggling) and
//     then the transmission phase.
//   - An Export is one export as the handshake describes it: its name,
//     description (NBD_INFO_DESCRIPTION), size and transmission flags
//     (NBD_INFO_EXPORT; the flags come from ReadOnly and Features, which
//     say what the backend truly supports), block size constraints
//     (BlockSizes, NBD_INFO_BLOCK_SIZE) and meta contexts
//     (NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT). Exports.Open
//     opens one for a Peer (the other end: its unix credentials, its TLS
//     state), which is where access is decided.
//   - A Backend is the storage behind an open export, one per connection:
//     the spec's request types are its methods. NBD_CMD_READ is ReadAt,
//     NBD_CMD_WRITE is WriteAt (NBD_CMD_FLAG_FUA is fua),
//     NBD_CMD_WRITE_ZEROES is WriteZeroes (NBD_CMD_FLAG_NO_HOLE and
//     NBD_CMD_FLAG_FAST_ZERO are ZeroNoHole and ZeroFast), NBD_CMD_TRIM is
//     Trim, NBD_CMD_FLUSH is Flush, NBD_CMD_BLOCK_STATUS is BlockStatus,
//     once per selected meta context; NBD_CMD_DISC ends the connection
//     and Close releases the backend.
//   - An Extent is a range with the flags of one meta context: a block
//     descriptor of NBD_REPLY_TYPE_BLOCK_STATUS. BaseAllocation is the
//     spec's base:allocation (StateHole, StateZero); a backend adds its
//     own contexts (daxstack adds daxstack:badblocks, flag 1 on a bad
//     range) in any namespace but base.
//   - Errno is an error value (NBD_E*); it matches the syscall.Errno of
//     the same number. A backend's errors are mapped to it by errno: a
//     media error (EIO) is NBD_EIO and fails that request alone. Where it
//     failed is the count ReadAt and WriteAt return, or an OffsetError;
//     with structured replies the client gets it as
//     NBD_REPLY_TYPE_ERROR_OFFSET, after the good bytes before it as an
//     NBD_REPLY_TYPE_OFFSET_DATA chunk. No reply ever says success before
//     its data is known good.
//   - A Client is one connection to an export, in the transmission
//     phase: Dial (an NBD URI, see URI) runs the handshake (STARTTLS
//     first for nbds://, structured replies, meta contexts, NBD_OPT_GO
//     with NBD_INFO_BLOCK_SIZE; NBD_OPT_EXPORT_NAME for old servers) and
//     returns it with the export's Info. Its requests may overlap: each
//     has a cookie and replies are matched by it. A failed request comes
//     back as an *Error (the server's Errno, message and error offset);
//     a dead connection fails everything with ErrClosed and closes Done.
//
// # Sessions
//
// A server connection reads requests in one goroutine, serves them on
// worker goroutines (at most MaxInFlight at once, their payloads bounded
// by MaxInFlightBytes); a worker sends its reply itself, together with
// every other reply ready by then, in one writev (if another goroutine is
// sending, that one takes it along). Payload buffers
// come from pools. Every length a peer sends is bounded before anything is
// allocated for it: option data (64 KiB), the number of options, read and
// write payloads (the advertised maximum), refused writes (skipped up to
// 64 MiB, the session ends beyond). A request that breaks a rule (range,
// alignment, a flag the export did not advertise, a read-only export) is
// answered with the spec's error and the session goes on; a peer that
// breaks the framing (a bad magic) ends it.
//
// TLS follows the spec's modes: without Server.TLSConfig, NOTLS
// (NBD_OPT_STARTTLS is refused with NBD_REP_ERR_POLICY); with it,
// STARTTLS is offered, and with RequireTLS the server is FORCEDTLS: every
// option but STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD before
// TLS, and no negotiation state survives STARTTLS.
//
// When Serve's context ends, the listener closes and each connection
// drains: options get NBD_REP_ERR_SHUTDOWN, requests in flight complete,
// later ones get NBD_ESHUTDOWN, and after ShutdownGrace the connection is
// closed. A backend whose export was removed returns ErrExportGone: the
// connection answers NBD_ESHUTDOWN from then on and the client leaves.
//
// # Not spoken
//
// Oldstyle and non-fixed newstyle negotiation (such clients are
// disconnected at once), the experimental extended headers
// (NBD_OPT_EXTENDED_HEADERS is answered NBD_REP_ERR_UNSUP, so 64-bit
// requests are not used) and NBD_CMD_RESIZE; NBD_CMD_CACHE is not
// advertised and is refused with NBD_EINVAL. The server never sends
// NBD_REPLY_TYPE_OFFSET_HOLE (reads are data), which the client accepts.
package nbd
