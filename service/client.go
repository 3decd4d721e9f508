package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/daxstack/daxstack/control"
)

// Client talks to the daemon. It implements control.API, so the CLI runs
// the same commands through it as on an embedded engine, with the same
// results and the same errors. It is safe for concurrent use; commands run
// one at a time on its connection, and each handle it opens has a
// connection of its own.
type Client struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	id   uint64
}

// Dial connects to the daemon's socket.
func Dial(path string) (*Client, error) {
	c := &Client{path: path}
	if err := c.dial(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) dial() error {
	conn, err := net.Dial("unix", c.path)
	if err != nil {
		return err
	}
	c.conn, c.r = conn, bufio.NewReaderSize(conn, 64<<10)
	return nil
}

// Close closes the connection (ending any claim made through it).
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// Call runs one command of the wire by name with JSON parameters, and
// returns its JSON result. A context that ends before the answer closes
// the connection (the daemon then gives up the command, changing nothing);
// the next call connects again.
func (c *Client) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return nil, fmt.Errorf("daemon %s: %w", c.path, err)
		}
	}
	c.id++
	b, err := json.Marshal(request{ID: c.id, Method: method, Params: params, Dir: workDir()})
	if err != nil {
		return nil, err
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	fail := func(err error) (json.RawMessage, error) {
		conn.Close()
		c.conn = nil
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("daemon %s: %w", c.path, err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	for {
		line, err := readLine(c.r, maxLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		var resp response
		if err := json.Unmarshal(line, &resp); err != nil {
			return fail(fmt.Errorf("bad response: %w", err))
		}
		if resp.ID != c.id {
			continue
		}
		return resp.Result, resp.Error.Err()
	}
}

// invoke runs a typed command through the wire.
func invoke[Resp any](c *Client, ctx context.Context, name string, req any) (Resp, error) {
	var resp Resp
	params, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	out, err := c.Call(ctx, name, params)
	if len(out) > 0 {
		if uerr := json.Unmarshal(out, &resp); uerr != nil && err == nil {
			err = fmt.Errorf("daemon %s: bad result of %s: %w", c.path, name, uerr)
		}
	}
	return resp, err
}

func invoke0(c *Client, ctx context.Context, name string, req any) error {
	_, err := invoke[control.Empty](c, ctx, name, req)
	return err
}

func (c *Client) Version(ctx context.Context) (control.VersionResp, error) {
	return invoke[control.VersionResp](c, ctx, "version", control.Empty{})
}

func (c *Client) Targets(ctx context.Context) ([]control.TargetTypeInfo, error) {
	return invoke[[]control.TargetTypeInfo](c, ctx, "targets", control.Empty{})
}

func (c *Client) Create(ctx context.Context, r control.CreateReq) error {
	return invoke0(c, ctx, "create", r)
}

func (c *Client) CreateConcise(ctx context.Context, r control.ConciseReq) error {
	return invoke0(c, ctx, "create-concise", r)
}

func (c *Client) Load(ctx context.Context, r control.LoadReq) error {
	return invoke0(c, ctx, "load", r)
}

func (c *Client) Resume(ctx context.Context, r control.SuspendReq) error {
	return invoke0(c, ctx, "resume", r)
}

func (c *Client) Suspend(ctx context.Context, r control.SuspendReq) error {
	return invoke0(c, ctx, "suspend", r)
}

func (c *Client) Clear(ctx context.Context, r control.NameReq) error {
	return invoke0(c, ctx, "clear", r)
}

func (c *Client) WipeTable(ctx context.Context, r control.NameReq) error {
	return invoke0(c, ctx, "wipe_table", r)
}

func (c *Client) Remove(ctx context.Context, r control.RemoveReq) error {
	return invoke0(c, ctx, "remove", r)
}

func (c *Client) RemoveAll(ctx context.Context, r control.RemoveReq) error {
	return invoke0(c, ctx, "remove_all", r)
}

func (c *Client) Rename(ctx context.Context, r control.RenameReq) error {
	return invoke0(c, ctx, "rename", r)
}

func (c *Client) Message(ctx context.Context, r control.MessageReq) (control.MessageResp, error) {
	return invoke[control.MessageResp](c, ctx, "message", r)
}

func (c *Client) Inject(ctx context.Context, r control.RangeReq) (control.InjectResp, error) {
	return invoke[control.InjectResp](c, ctx, "inject", r)
}

func (c *Client) ClearErrors(ctx context.Context, r control.RangeReq) (control.InjectResp, error) {
	return invoke[control.InjectResp](c, ctx, "clear-errors", r)
}

func (c *Client) ErrorRange(ctx context.Context, r control.RangeReq) error {
	return invoke0(c, ctx, "error-range", r)
}

func (c *Client) GoodRange(ctx context.Context, r control.RangeReq) error {
	return invoke0(c, ctx, "good-range", r)
}

// Claim claims a device; through the daemon the claim belongs to this
// client's connection and ends with it.
func (c *Client) Claim(ctx context.Context, r control.ClaimReq) (control.ClaimResp, error) {
	return invoke[control.ClaimResp](c, ctx, "claim", r)
}

func (c *Client) Release(ctx context.Context, r control.ClaimReq) error {
	return invoke0(c, ctx, "release", r)
}

func (c *Client) List(ctx context.Context) ([]control.DeviceInfo, error) {
	return invoke[[]control.DeviceInfo](c, ctx, "list", control.Empty{})
}

func (c *Client) Info(ctx context.Context, r control.NameReq) (control.DeviceInfo, error) {
	return invoke[control.DeviceInfo](c, ctx, "info", r)
}

func (c *Client) Table(ctx context.Context, r control.TableReq) (control.TableResp, error) {
	return invoke[control.TableResp](c, ctx, "table", r)
}

func (c *Client) Status(ctx context.Context, r control.TableReq) (control.TableResp, error) {
	return invoke[control.TableResp](c, ctx, "status", r)
}

func (c *Client) Map(ctx context.Context, r control.RangeReq) ([]control.MapPiece, error) {
	return invoke[[]control.MapPiece](c, ctx, "map", r)
}

func (c *Client) Rmap(ctx context.Context, r control.RangeReq) ([]control.DeviceRanges, error) {
	return invoke[[]control.DeviceRanges](c, ctx, "rmap", r)
}

func (c *Client) Badblocks(ctx context.Context, r control.NameReq) (control.DeviceRanges, error) {
	return invoke[control.DeviceRanges](c, ctx, "badblocks", r)
}

func (c *Client) Events(ctx context.Context, r control.EventsReq) (control.EventsResp, error) {
	return invoke[control.EventsResp](c, ctx, "events", r)
}

func (c *Client) Canonical(ctx context.Context, r control.NamesReq) ([]string, error) {
	return invoke[[]string](c, ctx, "canonical", r)
}

func (c *Client) Rescan(ctx context.Context) (control.RescanResp, error) {
	return invoke[control.RescanResp](c, ctx, "rescan", control.Empty{})
}

func (c *Client) PreRemove(ctx context.Context, r control.NameReq) (control.PreRemoveResp, error) {
	return invoke[control.PreRemoveResp](c, ctx, "pre-remove", r)
}

func (c *Client) Offline(ctx context.Context, r control.NameReq) (control.SeqResp, error) {
	return invoke[control.SeqResp](c, ctx, "offline", r)
}

// ErrNoDaemon: nothing answered on the socket, or the daemon went away
// before answering (it is not running, or restarting). Subscribe and Hold
// wrap it with the cause; any other error is the daemon's refusal.
var ErrNoDaemon = errors.New("no daxstack daemon answers")

var _ control.API = (*Client)(nil)

// workDir is the directory this process's relative paths start at, sent
// with each request so that the daemon reads them as this process means
// them ("" when it cannot be told: the daemon then refuses nothing it
// would otherwise accept, and starts relative paths at its own).
func workDir() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	return d
}

// Leaves reports the leaves through the daemon.
func (c *Client) Leaves(ctx context.Context) ([]control.LeafInfo, error) {
	return invoke[[]control.LeafInfo](c, ctx, "leaves", control.Empty{})
}
