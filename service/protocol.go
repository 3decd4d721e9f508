package service

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// request is one line from a client.
type request struct {
	ID     uint64          `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	// Dir is the client's working directory, where the relative paths of
	// its request start (not the daemon's).
	Dir string `json:"dir,omitempty"`
	// Ack, on a subscribed connection, says the client has handled every
	// event up to this sequence number.
	Ack *uint64 `json:"ack,omitempty"`
}

// response is one line from the server.
type response struct {
	ID     uint64             `json:"id"`
	Result json.RawMessage    `json:"result,omitempty"`
	Error  *control.WireError `json:"error,omitempty"`
	Event  *rmapchain.Event   `json:"event,omitempty"`
}

// SubscribeReq starts an event stream. With Holder set, the connection
// first claims every one of Devices for Holder (which needs the right to
// change state); the claims end when the connection does, and a holder
// that reconnects claims them again the same way.
type SubscribeReq struct {
	Since   uint64   `json:"since"`
	Devices []string `json:"devices,omitempty"`
	Holder  string   `json:"holder,omitempty"`
}

// SubscribeResp is the first line of a stream: the devices followed, as
// events name them (a holder's claimed devices), and the sequence number
// the stream starts after.
type SubscribeResp struct {
	Devices []string `json:"devices,omitempty"`
	Since   uint64   `json:"since"`
}

// OpenResp answers "open": the handle's device, after which the connection
// is an I/O stream (see frames.go).
type OpenResp struct {
	Size     int64 `json:"size"` // bytes
	ReadOnly bool  `json:"readonly"`
}

// maxLine bounds one protocol line (a table of a million segments and its
// envelope); data never travels in lines.
const maxLine = 16 << 20

// errLineTooLong ends a connection that sent a line over maxLine.
var errLineTooLong = errors.New("protocol line too long")

// readLine reads one line, without its end ("\n" or "\r\n"), refusing a
// line longer than max.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max+2 {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}
