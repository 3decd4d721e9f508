package service

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/daxstack/daxstack/control"
)

// The I/O stream. A connection whose "open" request succeeded carries
// binary frames from then on, in both directions, so that data travels as
// bytes, not as base64 inside JSON. Integers are big-endian.
//
// A request is a 32-byte header, followed by Length bytes of data for a
// write:
//
//	magic   uint32  ioRequestMagic
//	op      uint8   ioRead, ioWrite, ioWriteZeroes, ioDiscard, ioFlush, ioSize, ioCancel
//	flags   uint8   0
//	_       uint16
//	id      uint64  chosen by the client, echoed in the reply
//	offset  uint64  bytes (ioCancel: the id of the request to cancel)
//	length  uint32  bytes, at most control.MaxIO
//	_       uint32
//
// A reply is a 32-byte header, followed by DataLen bytes (what a read
// read) and ErrLen bytes (a control.WireError in JSON):
//
//	magic   uint32  ioReplyMagic
//	_       uint32
//	id      uint64
//	n       uint64  bytes done (ioSize: the device's size in bytes)
//	dataLen uint32
//	errLen  uint32
//
// Requests may be pipelined; replies come as each request ends, in any
// order. ioCancel ends the wait of a request (a suspended device, a delay)
// and gets no reply of its own. Closing the connection closes the handle.

const (
	ioRequestMagic = 0x44585251 // "DXRQ"
	ioReplyMagic   = 0x44585250 // "DXRP"
	ioHeader       = 32
	maxErrLen      = 64 << 10
)

// The ops of the I/O stream.
const (
	ioRead uint8 = iota
	ioWrite
	ioWriteZeroes
	ioDiscard
	ioFlush
	ioSize
	ioCancel
)

type ioRequest struct {
	op     uint8
	id     uint64
	offset uint64
	length uint32
}

type ioReply struct {
	id      uint64
	n       uint64
	dataLen uint32
	errLen  uint32
}

func (r ioRequest) encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:], ioRequestMagic)
	b[4], b[5] = r.op, 0
	binary.BigEndian.PutUint16(b[6:], 0)
	binary.BigEndian.PutUint64(b[8:], r.id)
	binary.BigEndian.PutUint64(b[16:], r.offset)
	binary.BigEndian.PutUint32(b[24:], r.length)
	binary.BigEndian.PutUint32(b[28:], 0)
}

// errFrame is a malformed frame: the peer does not speak the protocol,
// and the connection ends.
var errFrame = errors.New("malformed I/O frame")

func decodeRequest(b []byte) (ioRequest, error) {
	r := ioRequest{op: b[4], id: binary.BigEndian.Uint64(b[8:]), offset: binary.BigEndian.Uint64(b[16:]), length: binary.BigEndian.Uint32(b[24:])}
	switch {
	case binary.BigEndian.Uint32(b[0:]) != ioRequestMagic:
		return r, fmt.Errorf("%w: bad magic", errFrame)
	case r.op > ioCancel:
		return r, fmt.Errorf("%w: unknown op %d", errFrame, r.op)
	case r.length > control.MaxIO:
		return r, fmt.Errorf("%w: length %d over %d", errFrame, r.length, control.MaxIO)
	}
	return r, nil
}

func (r ioReply) encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:], ioReplyMagic)
	binary.BigEndian.PutUint32(b[4:], 0)
	binary.BigEndian.PutUint64(b[8:], r.id)
	binary.BigEndian.PutUint64(b[16:], r.n)
	binary.BigEndian.PutUint32(b[24:], r.dataLen)
	binary.BigEndian.PutUint32(b[28:], r.errLen)
}

func decodeReply(b []byte) (ioReply, error) {
	r := ioReply{id: binary.BigEndian.Uint64(b[8:]), n: binary.BigEndian.Uint64(b[16:]), dataLen: binary.BigEndian.Uint32(b[24:]), errLen: binary.BigEndian.Uint32(b[28:])}
	switch {
	case binary.BigEndian.Uint32(b[0:]) != ioReplyMagic:
		return r, fmt.Errorf("%w: bad magic", errFrame)
	case r.dataLen > control.MaxIO || r.errLen > maxErrLen:
		return r, fmt.Errorf("%w: reply of %d+%d bytes", errFrame, r.dataLen, r.errLen)
	}
	return r, nil
}

// writeReply writes one reply frame (header, data, error) to w.
func writeReply(w io.Writer, id, n uint64, data []byte, err error) error {
	var eb []byte
	if err != nil {
		var merr error
		if eb, merr = json.Marshal(control.EncodeError(err)); merr != nil || len(eb) > maxErrLen {
			eb, _ = json.Marshal(&control.WireError{Message: "error too long to send", Errno: 5})
		}
	}
	var h [ioHeader]byte
	ioReply{id: id, n: n, dataLen: uint32(len(data)), errLen: uint32(len(eb))}.encode(h[:])
	buf := make([]byte, 0, ioHeader+len(data)+len(eb))
	buf = append(append(append(buf, h[:]...), data...), eb...)
	_, werr := w.Write(buf)
	return werr
}
