package service

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/daxstack/daxstack/control"
)

// The wire's methods: each is one method of control.API, its request and
// result in JSON. The server decodes a request and calls the engine; the
// client (Client) encodes the same request and decodes the same result, so
// both sides agree by construction.

// method is one command of the wire.
type method struct {
	name  string
	right right // what the caller needs (see peer.go)
	call  func(ctx context.Context, a control.API, params json.RawMessage) (any, error)
}

var methods = map[string]method{}

// reg registers a method whose request is Req and result Resp.
func reg[Req, Resp any](name string, r right, fn func(a control.API, ctx context.Context, r Req) (Resp, error)) {
	methods[name] = method{name: name, right: r, call: func(ctx context.Context, a control.API, params json.RawMessage) (any, error) {
		var r Req
		if len(params) > 0 && string(params) != "null" {
			if err := json.Unmarshal(params, &r); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", control.ErrUsage, name, err)
			}
		}
		return fn(a, ctx, r)
	}}
}

// noResult adapts a method that returns only an error.
func noResult[Req any](fn func(a control.API, ctx context.Context, r Req) error) func(control.API, context.Context, Req) (control.Empty, error) {
	return func(a control.API, ctx context.Context, r Req) (control.Empty, error) {
		return control.Empty{}, fn(a, ctx, r)
	}
}

// noRequest adapts a method that takes no request.
func noRequest[Resp any](fn func(a control.API, ctx context.Context) (Resp, error)) func(control.API, context.Context, control.Empty) (Resp, error) {
	return func(a control.API, ctx context.Context, _ control.Empty) (Resp, error) { return fn(a, ctx) }
}

func init() {
	reg("version", rightQuery, noRequest(control.API.Version))
	reg("targets", rightQuery, noRequest(control.API.Targets))
	reg("create", rightChange, noResult(control.API.Create))
	reg("create-concise", rightChange, noResult(control.API.CreateConcise))
	reg("load", rightChange, noResult(control.API.Load))
	reg("resume", rightChange, noResult(control.API.Resume))
	reg("suspend", rightChange, noResult(control.API.Suspend))
	reg("clear", rightChange, noResult(control.API.Clear))
	reg("wipe_table", rightChange, noResult(control.API.WipeTable))
	reg("remove", rightChange, noResult(control.API.Remove))
	reg("remove_all", rightChange, noResult(control.API.RemoveAll))
	reg("rename", rightChange, noResult(control.API.Rename))
	reg("message", rightChange, control.API.Message)
	reg("inject", rightChange, control.API.Inject)
	reg("clear-errors", rightChange, control.API.ClearErrors)
	reg("error-range", rightChange, noResult(control.API.ErrorRange))
	reg("good-range", rightChange, noResult(control.API.GoodRange))
	reg("claim", rightChange, control.API.Claim)
	reg("release", rightChange, noResult(control.API.Release))
	reg("list", rightQuery, noRequest(control.API.List))
	reg("info", rightQuery, control.API.Info)
	reg("table", rightQuery, control.API.Table)
	reg("status", rightQuery, control.API.Status)
	reg("map", rightQuery, control.API.Map)
	reg("rmap", rightQuery, control.API.Rmap)
	reg("badblocks", rightQuery, control.API.Badblocks)
	reg("events", rightQuery, control.API.Events)
	reg("canonical", rightQuery, control.API.Canonical)
	reg("rescan", rightChange, noRequest(control.API.Rescan))
	reg("pre-remove", rightChange, control.API.PreRemove)
	reg("offline", rightChange, control.API.Offline)
	reg("leaves", rightQuery, noRequest(control.API.Leaves))
}

// methodNames returns the names of the wire's methods, sorted.
func methodNames() []string {
	out := make([]string, 0, len(methods))
	for n := range methods {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// The methods the server handles itself, beside the table: "subscribe"
// (an event stream), "open" (the connection becomes an I/O stream, see
// iostream.go) and acknowledgements.
const (
	methodSubscribe = "subscribe"
	methodOpen      = "open"
)
