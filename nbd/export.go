package nbd

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
)

// Backend is the storage behind one open export: what a connection's
// requests call. A Backend is opened for one connection (Exports.Open) and
// closed by the server when that connection ends; its methods are called
// from several goroutines at once (requests in flight run in parallel).
//
// Offsets and lengths are in bytes and lie inside the export's size as it
// was when it was opened (the server checks). Errors carry an errno
// (syscall.Errno or an internal/errno sentinel) that the server maps to the
// spec's error values: EIO is a media error, EROFS and EPERM are NBD_EPERM,
// ENOSPC (EDQUOT, EFBIG) NBD_ENOSPC, EINVAL NBD_EINVAL, ESHUTDOWN (or
// ErrExportGone) NBD_ESHUTDOWN; anything else is NBD_EIO.
type Backend interface {
	// ReadAt reads len(p) bytes at off, as io.ReaderAt: n is the number
	// of bytes at the start of p that hold good data, and when err is not
	// nil the failure lies at byte off+n. The server never sends bytes
	// past p[:n] as data, and sends the failure with its offset.
	ReadAt(ctx context.Context, p []byte, off int64) (n int, err error)
	// WriteAt writes p at off, as io.WriterAt (n bytes written before a
	// failure at off+n). With fua the data is durable when it returns.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) (n int, err error)
	// WriteZeroes makes [off, off+length) read as zeroes. With
	// ZeroNoHole the range must stay allocated; with ZeroFast it must
	// fail at once with EOPNOTSUPP, changing nothing, unless it is faster
	// than writing zeroes; with ZeroFUA it is durable when it returns.
	// Called only when Features has CanWriteZeroes (ZeroFast only with
	// CanFastZero).
	WriteZeroes(ctx context.Context, off, length int64, flags ZeroFlags) error
	// Trim is a hint that [off, off+length) is no longer needed. Called
	// only when Features has CanTrim.
	Trim(ctx context.Context, off, length int64, fua bool) error
	// Flush makes every write that has returned durable. Called only
	// when Features has CanFlush.
	Flush(ctx context.Context) error
	// BlockStatus appends to ext the extents of [off, off+length) that
	// have nonzero flags in meta context name (BaseAllocation or one of
	// the export's MetaContexts), in order and not overlapping; bytes
	// that no extent covers have flags 0. Extents may reach outside the
	// range (the server clips them). For base:allocation a hole is
	// StateHole|StateZero; a backend that does not track allocation
	// appends nothing (all data).
	BlockStatus(ctx context.Context, name string, off, length int64, ext []Extent) ([]Extent, error)
	// Close releases the backend; no method is called after it.
	Close() error
}

// ZeroFlags are the flags of a WriteZeroes.
type ZeroFlags uint8

const (
	ZeroFUA    ZeroFlags = 1 << iota // NBD_CMD_FLAG_FUA
	ZeroNoHole                       // NBD_CMD_FLAG_NO_HOLE: do not deallocate
	ZeroFast                         // NBD_CMD_FLAG_FAST_ZERO: fail unless fast
)

// Extent is a range of an export with the flags one meta context gives it.
type Extent struct {
	Offset int64
	Length int64
	Flags  uint32
}

// Features are the optional commands a backend truly supports; the server
// advertises a transmission flag only for what is here.
type Features uint16

const (
	CanFlush       Features = 1 << iota // NBD_FLAG_SEND_FLUSH
	CanFUA                              // NBD_FLAG_SEND_FUA
	CanTrim                             // NBD_FLAG_SEND_TRIM
	CanWriteZeroes                      // NBD_FLAG_SEND_WRITE_ZEROES
	CanFastZero                         // NBD_FLAG_SEND_FAST_ZERO (needs CanWriteZeroes)
	// CanMultiConn: the effect of a flush or FUA on one connection is
	// visible on every connection to the export when it returns
	// (NBD_FLAG_CAN_MULTI_CONN). Only a backend without a cache of its
	// own, or with one shared by all its connections, may say so.
	CanMultiConn
)

// BlockSizes are an export's size constraints (NBD_INFO_BLOCK_SIZE). A
// zero field takes the default: minimum 1, preferred 4096, maximum
// payload DefaultMaxPayload (or the server's MaxPayload, if smaller).
type BlockSizes struct {
	Minimum    uint32 // a power of two, at most 65536; offsets and lengths are multiples of it
	Preferred  uint32 // a power of two, at least max(Minimum, 512)
	MaxPayload uint32 // the largest READ or WRITE payload, at least Preferred
}

// Export is an export as opened for one connection: what the handshake
// tells the client, and the Backend its requests go to. The size and
// flags are those of the moment it was opened; a resize is seen by the
// connections that open it later.
type Export struct {
	Name         string // canonical name (NBD_INFO_NAME)
	Description  string // NBD_INFO_DESCRIPTION; may be empty
	Size         int64
	ReadOnly     bool
	Features     Features
	BlockSizes   BlockSizes
	MetaContexts []string // meta contexts besides base:allocation, full names ("daxstack:badblocks")
	// MaxParallel bounds the requests of one connection the backend is
	// asked to serve at once (0: as many as the server lets be in
	// flight). Requests beyond it stay queued (still in flight for the
	// client). A backend whose requests each keep a thread busy (pread
	// of a file, a memcpy) gains nothing from more than a few and pays
	// for them in thread switches; one that waits on a network wants
	// many.
	MaxParallel int
	Backend     Backend
}

// ExportInfo is an export as NBD_OPT_LIST shows it.
type ExportInfo struct {
	Name        string
	Description string
}

// Exports is the directory of what a server exports; its contents may
// change at any time (exports come and go with devices). Its methods are
// called from the handshakes of many connections at once.
type Exports interface {
	// Open opens the export called name for peer. It returns
	// ErrUnknownExport for a name it does not serve and ErrDenied when
	// the peer may not use it. The server closes the Backend when the
	// connection ends, or at once for NBD_OPT_INFO and the meta context
	// options, which open an export only to describe it.
	Open(ctx context.Context, peer *Peer, name string) (*Export, error)
	// List returns the exports peer may see (NBD_OPT_LIST).
	List(ctx context.Context, peer *Peer) ([]ExportInfo, error)
}

// Peer is the other end of a server connection, for authorization.
type Peer struct {
	// Conn is the connection as accepted: a *net.UnixConn or
	// *net.TCPConn from the usual listeners.
	Conn net.Conn
	// Cred holds the peer's credentials (SO_PEERCRED) when Conn is a
	// unix socket; nil otherwise.
	Cred *syscall.Ucred
	// TLS is the state of the TLS session after NBD_OPT_STARTTLS
	// (verified client certificates in PeerCertificates and
	// VerifiedChains); nil before.
	TLS *tls.ConnectionState
}

// peerOf fills a Peer for c.
func peerOf(c net.Conn) *Peer {
	p := &Peer{Conn: c}
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			var cred *syscall.Ucred
			var cerr error
			if err := raw.Control(func(fd uintptr) {
				cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
			}); err == nil && cerr == nil {
				p.Cred = cred
			}
		}
	}
	return p
}
