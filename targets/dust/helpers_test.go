package dust

import (
	"sync"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/linear"
)

// change is one StateChanged report.
type change struct{ added, cleared extent.Set }

// recorder keeps a target's StateChanged reports.
type recorder struct {
	mu    sync.Mutex
	calls []change
}

func (r *recorder) report(added, cleared extent.Set) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, change{added, cleared})
}

func (r *recorder) take() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// build creates device "d" over the guest's ramdisks (sparse) with the
// table text and returns its dust target (the first dust segment), whose
// StateChanged reports go to the returned recorder.
func build(t testing.TB, table string) (*dust, *recorder) {
	t.Helper()
	p := transcript.NewRamdisks(true).Pool()
	dev := stacktest.MustCreate(t, p, "d", table)
	for _, s := range dev.Active().Segments() {
		if d, ok := s.Target.(*dust); ok {
			r := &recorder{}
			d.report = r.report
			return d, r
		}
	}
	t.Fatalf("no dust segment in %q", table)
	return nil, nil
}

func msg(t testing.TB, d *dust, args ...string) string {
	t.Helper()
	reply, err := d.Message(args)
	if err != nil {
		t.Fatalf("message %q: %v", args, err)
	}
	return reply
}

func ext(start, n uint64) extent.Set { return extent.Of(extent.Extent{Start: start, Len: n}) }

func bio(op stack.Op, sector, sectors uint64) *stack.Bio {
	b := &stack.Bio{Op: op, Pos: sector * stack.SectorSize, Len: sectors * stack.SectorSize}
	switch op {
	case stack.OpRead, stack.OpWrite:
		b.Data = make([]byte, b.Len)
	case stack.OpFlush:
		b.Pos, b.Len = 0, 0
	}
	return b
}
