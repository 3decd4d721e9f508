package control_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// Two small targets for the engine's side of the target contract.
//
//	memo <dev> <offset>   linear, with a state (a word and failing sectors)
//	hold <dev> <offset>   linear, holding every request back for holdWait
//
// memo's messages: "set WORD" sets the word; "fail S N" makes segment
// sectors S..S+N-1 fail reads (Failer); "down" and "up" set its condition.
// A write over failing sectors makes them good again and reports it
// (StateChanged), as dust's write does. A state starting with '!' does not
// restore.
func init() {
	stack.Register(stack.TargetType{Name: "memo", Version: [3]uint32{1, 0, 0}, New: newMemo})
	stack.Register(stack.TargetType{Name: "hold", Version: [3]uint32{1, 0, 0}, New: newHold})
}

type linearish struct {
	dev   *stack.Dev
	start uint64
	len   uint64
}

func newLinearish(ti *stack.TargetInfo, args []string) (linearish, error) {
	if len(args) != 2 {
		return linearish{}, stack.Errorf("Invalid argument count", nil)
	}
	start, ok := stack.ParseSector(args[1])
	if !ok {
		return linearish{}, stack.Errorf("Invalid device sector", nil)
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return linearish{}, stack.Errorf("Device lookup failed", err)
	}
	return linearish{dev: dev, start: start, len: ti.Len}, nil
}

func (l *linearish) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Dev: l.dev, Sector: l.start + off, Run: l.len - off}, nil
}

func (l *linearish) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != l.dev {
		return extent.Set{}
	}
	return s.Clip(l.start, l.start+l.len).Shift(-int64(l.start))
}

func (l *linearish) Areas() []stack.Area {
	return []stack.Area{{Dev: l.dev, Start: l.start, Len: l.len}}
}
func (l *linearish) Table() string { return l.dev.Ref() + " " + strconv.FormatUint(l.start, 10) }

type memo struct {
	linearish
	ti *stack.TargetInfo

	mu   sync.Mutex
	word string
	bad  extent.Set
	down bool
}

var memoDtrs atomic.Int64

func newMemo(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	l, err := newLinearish(ti, args)
	if err != nil {
		return nil, err
	}
	return &memo{linearish: l, ti: ti, word: "fresh"}, nil
}

func (m *memo) Status() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.word
}

func (m *memo) State() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	b.WriteString(m.word)
	for e := range m.bad.Extents() {
		b.WriteString(" " + strconv.FormatUint(e.Start, 10) + "+" + strconv.FormatUint(e.Len, 10))
	}
	return []byte(b.String())
}

func (m *memo) Restore(state []byte) error {
	f := strings.Fields(string(state))
	if len(f) == 0 || strings.HasPrefix(f[0], "!") {
		return errors.New("memo: unreadable state")
	}
	var bad extent.Set
	for _, x := range f[1:] {
		a, b, ok := strings.Cut(x, "+")
		s, err1 := strconv.ParseUint(a, 10, 64)
		n, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || n == 0 {
			return errors.New("memo: unreadable state")
		}
		bad = bad.Union(extent.Of(extent.Extent{Start: s, Len: n}))
	}
	m.mu.Lock()
	m.word, m.bad = f[0], bad
	m.mu.Unlock()
	return nil
}

func (m *memo) Message(args []string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case len(args) == 2 && args[0] == "set":
		m.word = args[1]
		return "", nil
	case len(args) == 3 && args[0] == "fail":
		s, err1 := strconv.ParseUint(args[1], 10, 64)
		n, err2 := strconv.ParseUint(args[2], 10, 64)
		if err1 != nil || err2 != nil || n == 0 || s+n > m.len {
			return "", stack.Errorf("Invalid range", syscall.EINVAL)
		}
		m.bad = m.bad.Union(extent.Of(extent.Extent{Start: s, Len: n}))
		return "", nil
	case len(args) == 1 && args[0] == "down":
		m.down = true
		return "", nil
	case len(args) == 1 && args[0] == "up":
		m.down = false
		return "", nil
	}
	return "", stack.Errorf("Unknown message", syscall.EINVAL)
}

func (m *memo) Failing() extent.Set {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bad
}

func (m *memo) Condition() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return "down"
	}
	return ""
}

func (m *memo) MapIO(b *stack.Bio) (stack.Action, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hit := m.bad.Clip(b.Sector(), b.EndSector())
	if hit.Empty() {
		return stack.Remap, nil
	}
	if b.Op != stack.OpWrite {
		return stack.Kill, nil
	}
	m.bad = m.bad.Subtract(hit)
	m.ti.StateChanged(extent.Set{}, hit)
	return stack.Remap, nil
}

func (m *memo) Dtr() { memoDtrs.Add(1) }

// holdWait is how long hold targets keep requests (an hour: until a
// suspend of their device lets them go, or the client gives up).
var holdWait atomic.Int64

func init() { holdWait.Store(int64(time.Hour)) }

type hold struct{ linearish }

func newHold(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	l, err := newLinearish(ti, args)
	if err != nil {
		return nil, err
	}
	return &hold{l}, nil
}

func (h *hold) Status() string { return "" }

func (h *hold) Hold(*stack.Bio) (time.Duration, func()) { return time.Duration(holdWait.Load()), nil }

// Split: a piece of a memo segment is a memo segment at the moved offset
// (its state comes from the target it is a piece of).
func (m *memo) Split(off, n uint64) (string, error) {
	return m.dev.Ref() + " " + strconv.FormatUint(m.start+off, 10), nil
}
