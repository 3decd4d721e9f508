package control_test

import (
	"context"
	"fmt"
	"io"

	"github.com/daxstack/daxstack/control"
)

// IOReq and IOResp are the tests' read and write requests (through a
// handle, as the CLI's read and write).
type IOReq struct {
	Name   string
	Offset int64
	Length int
	Data   []byte
}

type IOResp struct {
	N    int
	Data []byte
}

// dispatch runs the command the tests name on a, as the CLI's verb of that
// name does.
func dispatch(ctx context.Context, a control.API, method string, req any) (any, error) {
	switch method {
	case "create":
		return control.Empty{}, a.Create(ctx, req.(control.CreateReq))
	case "create-concise":
		return control.Empty{}, a.CreateConcise(ctx, req.(control.ConciseReq))
	case "load":
		return control.Empty{}, a.Load(ctx, req.(control.LoadReq))
	case "resume":
		return control.Empty{}, a.Resume(ctx, control.SuspendReq{Name: req.(control.NameReq).Name})
	case "suspend":
		return control.Empty{}, a.Suspend(ctx, control.SuspendReq{Name: req.(control.NameReq).Name})
	case "clear":
		return control.Empty{}, a.Clear(ctx, req.(control.NameReq))
	case "wipe_table":
		return control.Empty{}, a.WipeTable(ctx, req.(control.NameReq))
	case "remove":
		return control.Empty{}, a.Remove(ctx, req.(control.RemoveReq))
	case "remove_all":
		return control.Empty{}, a.RemoveAll(ctx, req.(control.RemoveReq))
	case "rename":
		return control.Empty{}, a.Rename(ctx, req.(control.RenameReq))
	case "message":
		return a.Message(ctx, req.(control.MessageReq))
	case "inject":
		return a.Inject(ctx, req.(control.RangeReq))
	case "clear-errors":
		return a.ClearErrors(ctx, req.(control.RangeReq))
	case "error-range":
		return control.Empty{}, a.ErrorRange(ctx, req.(control.RangeReq))
	case "good-range":
		return control.Empty{}, a.GoodRange(ctx, req.(control.RangeReq))
	case "claim":
		return a.Claim(ctx, req.(control.ClaimReq))
	case "release":
		return control.Empty{}, a.Release(ctx, req.(control.ClaimReq))
	case "list":
		return a.List(ctx)
	case "info":
		return a.Info(ctx, req.(control.NameReq))
	case "table":
		return a.Table(ctx, req.(control.TableReq))
	case "status":
		return a.Status(ctx, req.(control.TableReq))
	case "map":
		return a.Map(ctx, req.(control.RangeReq))
	case "rmap":
		return a.Rmap(ctx, req.(control.RangeReq))
	case "badblocks":
		return a.Badblocks(ctx, req.(control.NameReq))
	case "events":
		return a.Events(ctx, req.(control.EventsReq))
	case "rescan":
		return a.Rescan(ctx)
	case "pre-remove":
		return a.PreRemove(ctx, req.(control.NameReq))
	case "offline":
		return a.Offline(ctx, req.(control.NameReq))
	case "read", "write":
		r := req.(IOReq)
		h, err := a.Open(ctx, control.OpenReq{Name: r.Name, Write: method == "write"})
		if err != nil {
			return IOResp{}, err
		}
		defer h.Close()
		if method == "write" {
			n, err := h.WriteAtContext(ctx, r.Data, r.Offset)
			return IOResp{N: n}, err
		}
		buf := make([]byte, r.Length)
		n, err := h.ReadAtContext(ctx, buf, r.Offset)
		if err == io.EOF {
			err = nil
		}
		return IOResp{N: n, Data: buf[:n]}, err
	}
	return nil, fmt.Errorf("no command %q", method)
}
