package control

import (
	"context"
	"errors"
	"os"

	"github.com/daxstack/daxstack/store"
)

// Local is the API of a process that works on the database directly (the
// CLI without a daemon): each call opens an engine, shared for reports and
// exclusive for changes, so that concurrent daxstack processes serialise
// on bbolt's file lock, runs the command and closes it. A report on a
// database that was never created answers from an empty state without
// creating one. A handle (Open) keeps its engine open until it is closed.
type Local struct {
	Config Config
	// DialErr, when set, is why a daemon's socket could not be used; it is
	// mentioned if the database cannot be opened either.
	DialErr error
}

// with runs fn on an engine opened for the call.
func with[R any](l *Local, mutates bool, fn func(*Engine) (R, error)) (R, error) {
	var zero R
	e, err := l.engine(mutates)
	if err != nil {
		return zero, err
	}
	defer e.Close()
	return fn(e)
}

// engine opens the engine of one call.
func (l *Local) engine(mutates bool) (*Engine, error) {
	cfg := l.Config
	cfg.ReadOnly = !mutates
	cfg.Daemon = false
	if cfg.ReadOnly {
		if _, err := os.Stat(cfg.DB); errors.Is(err, os.ErrNotExist) {
			return emptyEngine()
		}
	}
	e, err := Open(cfg)
	if cfg.ReadOnly && errors.Is(err, store.ErrNotFound) {
		// The file is empty or was never initialised: the first command
		// that would have created it was killed. Nothing was stored.
		return emptyEngine()
	}
	if err != nil && l.DialErr != nil {
		return nil, &dialAndOpenError{dial: l.DialErr, open: err}
	}
	return e, err
}

// dialAndOpenError is the failure of a process that could use neither the
// daemon nor the database.
type dialAndOpenError struct{ dial, open error }

func (e *dialAndOpenError) Error() string {
	return e.dial.Error() + ", and the database cannot be opened directly: " + e.open.Error()
}

func (e *dialAndOpenError) Unwrap() error { return e.open }

// emptyEngine is a throw-away engine on an empty database in a temporary
// directory, removed when the engine closes.
func emptyEngine() (*Engine, error) {
	dir, err := os.MkdirTemp("", "daxstack-empty-")
	if err != nil {
		return nil, err
	}
	e, err := Open(Config{DB: dir + "/empty.db"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.onClose = func() { os.RemoveAll(dir) }
	return e, nil
}

func (l *Local) Version(ctx context.Context) (VersionResp, error) { return VersionInfo(), nil }

func (l *Local) Targets(ctx context.Context) ([]TargetTypeInfo, error) { return TargetTypes(), nil }

func (l *Local) Create(ctx context.Context, r CreateReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Create(ctx, r) })
	return err
}

func (l *Local) CreateConcise(ctx context.Context, r ConciseReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.CreateConcise(ctx, r) })
	return err
}

func (l *Local) Load(ctx context.Context, r LoadReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Load(ctx, r) })
	return err
}

func (l *Local) Resume(ctx context.Context, r SuspendReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Resume(ctx, r) })
	return err
}

func (l *Local) Suspend(ctx context.Context, r SuspendReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Suspend(ctx, r) })
	return err
}

func (l *Local) Clear(ctx context.Context, r NameReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Clear(ctx, r) })
	return err
}

func (l *Local) WipeTable(ctx context.Context, r NameReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.WipeTable(ctx, r) })
	return err
}

func (l *Local) Remove(ctx context.Context, r RemoveReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Remove(ctx, r) })
	return err
}

func (l *Local) RemoveAll(ctx context.Context, r RemoveReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.RemoveAll(ctx, r) })
	return err
}

func (l *Local) Rename(ctx context.Context, r RenameReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Rename(ctx, r) })
	return err
}

func (l *Local) Message(ctx context.Context, r MessageReq) (MessageResp, error) {
	return with(l, true, func(e *Engine) (MessageResp, error) { return e.Message(ctx, r) })
}

func (l *Local) Inject(ctx context.Context, r RangeReq) (InjectResp, error) {
	return with(l, true, func(e *Engine) (InjectResp, error) { return e.Inject(ctx, r) })
}

func (l *Local) ClearErrors(ctx context.Context, r RangeReq) (InjectResp, error) {
	return with(l, true, func(e *Engine) (InjectResp, error) { return e.ClearErrors(ctx, r) })
}

func (l *Local) ErrorRange(ctx context.Context, r RangeReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.ErrorRange(ctx, r) })
	return err
}

func (l *Local) GoodRange(ctx context.Context, r RangeReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.GoodRange(ctx, r) })
	return err
}

func (l *Local) Claim(ctx context.Context, r ClaimReq) (ClaimResp, error) {
	return with(l, true, func(e *Engine) (ClaimResp, error) { return e.Claim(ctx, r) })
}

func (l *Local) Release(ctx context.Context, r ClaimReq) error {
	_, err := with(l, true, func(e *Engine) (Empty, error) { return Empty{}, e.Release(ctx, r) })
	return err
}

func (l *Local) List(ctx context.Context) ([]DeviceInfo, error) {
	return with(l, false, func(e *Engine) ([]DeviceInfo, error) { return e.List(ctx) })
}

func (l *Local) Info(ctx context.Context, r NameReq) (DeviceInfo, error) {
	return with(l, false, func(e *Engine) (DeviceInfo, error) { return e.Info(ctx, r) })
}

func (l *Local) Table(ctx context.Context, r TableReq) (TableResp, error) {
	return with(l, false, func(e *Engine) (TableResp, error) { return e.Table(ctx, r) })
}

func (l *Local) Status(ctx context.Context, r TableReq) (TableResp, error) {
	return with(l, false, func(e *Engine) (TableResp, error) { return e.Status(ctx, r) })
}

func (l *Local) Map(ctx context.Context, r RangeReq) ([]MapPiece, error) {
	return with(l, false, func(e *Engine) ([]MapPiece, error) { return e.Map(ctx, r) })
}

func (l *Local) Rmap(ctx context.Context, r RangeReq) ([]DeviceRanges, error) {
	return with(l, false, func(e *Engine) ([]DeviceRanges, error) { return e.Rmap(ctx, r) })
}

func (l *Local) Badblocks(ctx context.Context, r NameReq) (DeviceRanges, error) {
	return with(l, false, func(e *Engine) (DeviceRanges, error) { return e.Badblocks(ctx, r) })
}

func (l *Local) Events(ctx context.Context, r EventsReq) (EventsResp, error) {
	return with(l, false, func(e *Engine) (EventsResp, error) { return e.Events(ctx, r) })
}

func (l *Local) Canonical(ctx context.Context, r NamesReq) ([]string, error) {
	return with(l, false, func(e *Engine) ([]string, error) { return e.Canonical(ctx, r) })
}

func (l *Local) Rescan(ctx context.Context) (RescanResp, error) {
	return with(l, true, func(e *Engine) (RescanResp, error) { return e.Rescan(ctx) })
}

func (l *Local) PreRemove(ctx context.Context, r NameReq) (PreRemoveResp, error) {
	return with(l, true, func(e *Engine) (PreRemoveResp, error) { return e.PreRemove(ctx, r) })
}

func (l *Local) Offline(ctx context.Context, r NameReq) (SeqResp, error) {
	return with(l, true, func(e *Engine) (SeqResp, error) { return e.Offline(ctx, r) })
}

// Open opens an engine for the handle's life: shared for reading, the
// database locked for writing (a write that clears poison commits).
func (l *Local) Open(ctx context.Context, r OpenReq) (Handle, error) {
	e, err := l.engine(r.Write)
	if err != nil {
		return nil, err
	}
	h, err := e.Open(ctx, r)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &localHandle{Handle: h, e: e}, nil
}

// localHandle closes its engine with it.
type localHandle struct {
	Handle
	e *Engine
}

func (h *localHandle) Close() error {
	err := h.Handle.Close()
	return errors.Join(err, h.e.Close())
}

var (
	_ API = (*Engine)(nil)
	_ API = (*Local)(nil)
)

func (l *Local) Leaves(ctx context.Context) ([]LeafInfo, error) {
	return with(l, false, func(e *Engine) ([]LeafInfo, error) { return e.Leaves(ctx) })
}
