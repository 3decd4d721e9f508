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

// SubscribeReq starts an event stream.
type SubscribeReq struct {
	Since   uint64   `json:"since"`
	Devices []string `json:"devices,omitempty"`
}

// maxLine bounds one protocol line (a write of 4 MiB, base64-encoded, and
// its envelope).
const maxLine = 16 << 20
