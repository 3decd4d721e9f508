package service

import (
	"encoding/json"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// request is one line from a client.
type request struct {
	ID     uint64          `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
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

// maxLine bounds one protocol line (a write of 4 MiB, base64-encoded, and
// its envelope).
const maxLine = 16 << 20
