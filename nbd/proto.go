package nbd

// The wire values of doc/proto.md, with the spec's names beside them. All
// fields are big-endian.

// Magic numbers.
const (
	nbdMagic                 = 0x4e42444d41474943 // NBDMAGIC (INIT_PASSWD)
	ihaveopt                 = 0x49484156454f5054 // IHAVEOPT (NBD_OPT magic)
	cliservMagic             = 0x00420281861253   // oldstyle cliserv_magic
	repMagic                 = 0x0003e889045565a9 // NBD_REP_MAGIC
	requestMagic             = 0x25609513         // NBD_REQUEST_MAGIC
	simpleReplyMagic         = 0x67446698         // NBD_SIMPLE_REPLY_MAGIC
	structuredReplyMagic     = 0x668e33ef         // NBD_STRUCTURED_REPLY_MAGIC
	extendedRequestMagic     = 0x21e41c71         // NBD_EXTENDED_REQUEST_MAGIC (not spoken)
	extendedReplyMagic       = 0x6e8a278c         // NBD_EXTENDED_REPLY_MAGIC (not spoken)
	defaultPort              = "10809"            // IANA port for NBD
	exportNameZeroes         = 124                // zero bytes after NBD_OPT_EXPORT_NAME's reply
	requestHeaderLen         = 28
	simpleReplyHeaderLen     = 16
	structuredReplyHeaderLen = 20
	optionHeaderLen          = 16
	optionReplyHeaderLen     = 20
)

// Handshake flags (server, 16 bits) and client flags (32 bits).
const (
	flagFixedNewstyle  = 1 << 0 // NBD_FLAG_FIXED_NEWSTYLE
	flagNoZeroes       = 1 << 1 // NBD_FLAG_NO_ZEROES
	flagCFixedNewstyle = 1 << 0 // NBD_FLAG_C_FIXED_NEWSTYLE
	flagCNoZeroes      = 1 << 1 // NBD_FLAG_C_NO_ZEROES
)

// Options (NBD_OPT_*).
const (
	optExportName      = 1  // NBD_OPT_EXPORT_NAME
	optAbort           = 2  // NBD_OPT_ABORT
	optList            = 3  // NBD_OPT_LIST
	optPeekExport      = 4  // NBD_OPT_PEEK_EXPORT (withdrawn)
	optStartTLS        = 5  // NBD_OPT_STARTTLS
	optInfo            = 6  // NBD_OPT_INFO
	optGo              = 7  // NBD_OPT_GO
	optStructuredReply = 8  // NBD_OPT_STRUCTURED_REPLY
	optListMetaContext = 9  // NBD_OPT_LIST_META_CONTEXT
	optSetMetaContext  = 10 // NBD_OPT_SET_META_CONTEXT
	optExtendedHeaders = 11 // NBD_OPT_EXTENDED_HEADERS (answered NBD_REP_ERR_UNSUP)
)

// Option reply types (NBD_REP_*). Errors have bit 31 set.
const (
	repAck              = 1                 // NBD_REP_ACK
	repServer           = 2                 // NBD_REP_SERVER
	repInfo             = 3                 // NBD_REP_INFO
	repMetaContext      = 4                 // NBD_REP_META_CONTEXT
	repFlagError        = 1 << 31           // bit 31: an error reply
	repErrUnsup         = repFlagError | 1  // NBD_REP_ERR_UNSUP
	repErrPolicy        = repFlagError | 2  // NBD_REP_ERR_POLICY
	repErrInvalid       = repFlagError | 3  // NBD_REP_ERR_INVALID
	repErrPlatform      = repFlagError | 4  // NBD_REP_ERR_PLATFORM
	repErrTLSReqd       = repFlagError | 5  // NBD_REP_ERR_TLS_REQD
	repErrUnknown       = repFlagError | 6  // NBD_REP_ERR_UNKNOWN
	repErrShutdown      = repFlagError | 7  // NBD_REP_ERR_SHUTDOWN
	repErrBlockSizeReqd = repFlagError | 8  // NBD_REP_ERR_BLOCK_SIZE_REQD
	repErrTooBig        = repFlagError | 9  // NBD_REP_ERR_TOO_BIG
	repErrExtHeaderReqd = repFlagError | 10 // NBD_REP_ERR_EXT_HEADER_REQD
)

// Information types of NBD_REP_INFO (NBD_INFO_*).
const (
	infoExport      = 0 // NBD_INFO_EXPORT
	infoName        = 1 // NBD_INFO_NAME
	infoDescription = 2 // NBD_INFO_DESCRIPTION
	infoBlockSize   = 3 // NBD_INFO_BLOCK_SIZE
)

// Flags are the transmission flags of an export (NBD_FLAG_*), as sent in
// NBD_INFO_EXPORT or the reply to NBD_OPT_EXPORT_NAME.
type Flags uint16

// Transmission flags.
const (
	FlagHasFlags        Flags = 1 << 0  // NBD_FLAG_HAS_FLAGS: always set
	FlagReadOnly        Flags = 1 << 1  // NBD_FLAG_READ_ONLY
	FlagSendFlush       Flags = 1 << 2  // NBD_FLAG_SEND_FLUSH
	FlagSendFUA         Flags = 1 << 3  // NBD_FLAG_SEND_FUA
	FlagRotational      Flags = 1 << 4  // NBD_FLAG_ROTATIONAL
	FlagSendTrim        Flags = 1 << 5  // NBD_FLAG_SEND_TRIM
	FlagSendWriteZeroes Flags = 1 << 6  // NBD_FLAG_SEND_WRITE_ZEROES
	FlagSendDF          Flags = 1 << 7  // NBD_FLAG_SEND_DF
	FlagCanMultiConn    Flags = 1 << 8  // NBD_FLAG_CAN_MULTI_CONN
	FlagSendResize      Flags = 1 << 9  // NBD_FLAG_SEND_RESIZE (not spoken)
	FlagSendCache       Flags = 1 << 10 // NBD_FLAG_SEND_CACHE
	FlagSendFastZero    Flags = 1 << 11 // NBD_FLAG_SEND_FAST_ZERO
)

// Commands (NBD_CMD_*).
const (
	cmdRead        = 0 // NBD_CMD_READ
	cmdWrite       = 1 // NBD_CMD_WRITE
	cmdDisc        = 2 // NBD_CMD_DISC
	cmdFlush       = 3 // NBD_CMD_FLUSH
	cmdTrim        = 4 // NBD_CMD_TRIM
	cmdCache       = 5 // NBD_CMD_CACHE
	cmdWriteZeroes = 6 // NBD_CMD_WRITE_ZEROES
	cmdBlockStatus = 7 // NBD_CMD_BLOCK_STATUS
)

// Command flags (NBD_CMD_FLAG_*).
const (
	cmdFlagFUA      = 1 << 0 // NBD_CMD_FLAG_FUA
	cmdFlagNoHole   = 1 << 1 // NBD_CMD_FLAG_NO_HOLE
	cmdFlagDF       = 1 << 2 // NBD_CMD_FLAG_DF
	cmdFlagReqOne   = 1 << 3 // NBD_CMD_FLAG_REQ_ONE
	cmdFlagFastZero = 1 << 4 // NBD_CMD_FLAG_FAST_ZERO
	cmdFlagsKnown   = cmdFlagFUA | cmdFlagNoHole | cmdFlagDF | cmdFlagReqOne | cmdFlagFastZero
)

// Structured reply flags and types (NBD_REPLY_FLAG_*, NBD_REPLY_TYPE_*).
const (
	replyFlagDone        = 1 << 0    // NBD_REPLY_FLAG_DONE
	replyTypeNone        = 0         // NBD_REPLY_TYPE_NONE
	replyTypeOffsetData  = 1         // NBD_REPLY_TYPE_OFFSET_DATA
	replyTypeOffsetHole  = 2         // NBD_REPLY_TYPE_OFFSET_HOLE
	replyTypeBlockStatus = 5         // NBD_REPLY_TYPE_BLOCK_STATUS
	replyTypeErrorBit    = 1 << 15   // bit 15: an error chunk
	replyTypeError       = 1<<15 + 1 // NBD_REPLY_TYPE_ERROR
	replyTypeErrorOffset = 1<<15 + 2 // NBD_REPLY_TYPE_ERROR_OFFSET
)

// Meta contexts and the flags of base:allocation (NBD_STATE_*).
const (
	// BaseAllocation is the one meta context the spec defines.
	BaseAllocation = "base:allocation"
	// StateHole (NBD_STATE_HOLE) marks an extent of base:allocation
	// that is not allocated.
	StateHole uint32 = 1 << 0
	// StateZero (NBD_STATE_ZERO) marks an extent of base:allocation
	// that reads as zeroes.
	StateZero uint32 = 1 << 1
)

// Limits.
const (
	// maxString is the spec's limit on any string (export names,
	// descriptions, meta context names, error messages).
	maxString = 4096
	// maxOptionLen bounds the data of one option the server accepts; an
	// option longer than this ends the session (the spec allows a hard
	// disconnect for a denial of service).
	maxOptionLen = 64 << 10
	// maxOptions bounds the options of one handshake (more after
	// NBD_OPT_LIST, per export listed).
	maxOptions = 64
	// DefaultMaxPayload is the maximum payload advertised unless an export
	// says otherwise (the spec's 2^25).
	DefaultMaxPayload = 32 << 20
	// maxDescriptors bounds the block status descriptors of one chunk
	// (the spec says no more than 2^20; fewer keeps replies small).
	maxDescriptors = 1 << 16
	// maxReplyLen bounds an option reply the client accepts.
	maxReplyLen = 64 << 10
)
