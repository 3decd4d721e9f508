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
	name    string
	mutates bool // changes state: only root and the daemon's group may call it
	call    func(ctx context.Context, a control.API, params json.RawMessage) (any, error)
}

var methods = map[string]method{}

// reg registers a method whose request is Req and result Resp.
func reg[Req, Resp any](name string, mutates bool, fn func(a control.API, ctx context.Context, r Req) (Resp, error)) {
	methods[name] = method{name: name, mutates: mutates, call: func(ctx context.Context, a control.API, params json.RawMessage) (any, error) {
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
	reg("version", false, noRequest(control.API.Version))
	reg("targets", false, noRequest(control.API.Targets))
	reg("create", true, noResult(control.API.Create))
	reg("create-concise", true, noResult(control.API.CreateConcise))
	reg("load", true, noResult(control.API.Load))
	reg("resume", true, noResult(control.API.Resume))
	reg("suspend", true, noResult(control.API.Suspend))
	reg("clear", true, noResult(control.API.Clear))
	reg("wipe_table", true, noResult(control.API.WipeTable))
	reg("remove", true, noResult(control.API.Remove))
	reg("remove_all", true, noResult(control.API.RemoveAll))
	reg("rename", true, noResult(control.API.Rename))
	reg("message", true, control.API.Message)
	reg("inject", true, control.API.Inject)
	reg("clear-errors", true, control.API.ClearErrors)
	reg("error-range", true, noResult(control.API.ErrorRange))
	reg("good-range", true, noResult(control.API.GoodRange))
	reg("claim", true, control.API.Claim)
	reg("release", true, noResult(control.API.Release))
	reg("list", false, noRequest(control.API.List))
	reg("info", false, control.API.Info)
	reg("table", false, control.API.Table)
	reg("status", false, control.API.Status)
	reg("map", false, control.API.Map)
	reg("rmap", false, control.API.Rmap)
	reg("badblocks", false, control.API.Badblocks)
	reg("events", false, control.API.Events)
	reg("canonical", false, control.API.Canonical)
	reg("rescan", true, noRequest(control.API.Rescan))
	reg("pre-remove", true, control.API.PreRemove)
	reg("offline", true, control.API.Offline)
	reg("leaves", false, noRequest(control.API.Leaves))
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
