package stack_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// The fake target is linear placement with every optional hook of the
// target contract, each recorded and steered through a fakeCtl the test
// owns:
//
//	<start> <length> fake <dev> <offset> <ctl> [<maxio>]
//
// where <ctl> names a fakeCtl registered with newCtl. Every target built
// with the same ctl shares it.
func init() {
	stack.Register(stack.TargetType{Name: "fake", Version: [3]uint32{1, 0, 0}, New: newFake})
}

var (
	ctlMu sync.Mutex
	ctls  = map[string]*fakeCtl{}
)

// fakeCtl steers and records fake targets.
type fakeCtl struct {
	mu      sync.Mutex
	bios    []bioRec // MapIO calls, in order
	holds   []bioRec // Hold calls
	ends    []endRec // EndIO calls
	dtrs    map[*fake]int
	built   []*fake
	events  []string // "presuspend", "postsuspend", "resume", "undo"
	act     stack.Action
	killErr error
	wait    time.Duration // what Hold returns
	// failing is what Failing returns (segment sectors).
	failing extent.Set
	noIOMap bool // the targets do not implement IOMapper (see fakeDelayOnly)
	// rewrite, if set, is called by MapIO on the Bio before it returns
	// act (to change Data or Op, as flakey does).
	rewrite func(b *stack.Bio)
	// writes holds a copy of each write's Data as MapIO saw it.
	writes [][]byte
	// lostPrivate counts EndIO calls whose Bio had lost the Private MapIO
	// put there.
	lostPrivate int
}

type bioRec struct {
	Op       stack.Op
	Pos, Len uint64
}

type endRec struct {
	bioRec
	Err error
}

// newCtl registers a fakeCtl under a name unique to the test.
func newCtl(t *testing.T, name string) *fakeCtl {
	c := &fakeCtl{dtrs: map[*fake]int{}}
	key := t.Name() + "/" + name
	ctlMu.Lock()
	ctls[key] = c
	ctlMu.Unlock()
	t.Cleanup(func() {
		ctlMu.Lock()
		delete(ctls, key)
		ctlMu.Unlock()
	})
	return c
}

// ctlRef is how a table names a ctl made by newCtl.
func ctlRef(t *testing.T, name string) string { return stack.EscapeArg(t.Name() + "/" + name) }

func (c *fakeCtl) Bios() []bioRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bioRec(nil), c.bios...)
}

func (c *fakeCtl) Ends() []endRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]endRec(nil), c.ends...)
}

func (c *fakeCtl) Events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events...)
}

func (c *fakeCtl) set(fn func(c *fakeCtl)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(c)
}

type fake struct {
	ctl   *fakeCtl
	ti    *stack.TargetInfo
	dev   *stack.Dev
	start uint64
	len   uint64

	mu    sync.Mutex
	state string
}

func newFake(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) != 3 && len(args) != 4 {
		return nil, stack.Errorf("Invalid argument count", nil)
	}
	start, ok := stack.ParseSector(args[1])
	if !ok {
		return nil, stack.Errorf("Invalid device sector", nil)
	}
	ctlMu.Lock()
	c := ctls[args[2]]
	ctlMu.Unlock()
	if c == nil {
		return nil, stack.Errorf("No such ctl", nil)
	}
	if len(args) == 4 {
		n, err := strconv.ParseUint(args[3], 10, 64)
		if err != nil {
			return nil, stack.Errorf("Invalid maxio", nil)
		}
		ti.SetMaxIOLen(n)
	}
	dev, err := ti.GetDevice(args[0])
	if err != nil {
		return nil, stack.Errorf("Device lookup failed", err)
	}
	f := &fake{ctl: c, ti: ti, dev: dev, start: start, len: ti.Len, state: "fresh"}
	c.mu.Lock()
	c.built = append(c.built, f)
	noIOMap := c.noIOMap
	c.mu.Unlock()
	if noIOMap {
		return &fakeDelayOnly{f}, nil
	}
	return f, nil
}

func (f *fake) Map(off uint64) (stack.Mapping, error) {
	return stack.Mapping{Dev: f.dev, Sector: f.start + off, Run: f.len - off}, nil
}

func (f *fake) Rmap(child *stack.Dev, s extent.Set) extent.Set {
	if child != f.dev {
		return extent.Set{}
	}
	return s.Clip(f.start, f.start+f.len).Shift(-int64(f.start))
}

func (f *fake) Areas() []stack.Area { return []stack.Area{{Dev: f.dev, Start: f.start, Len: f.len}} }
func (f *fake) Table() string       { return fmt.Sprintf("%s %d", f.dev.Ref(), f.start) }

func (f *fake) Status() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fake) MapIO(b *stack.Bio) (stack.Action, error) {
	c := f.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bios = append(c.bios, bioRec{b.Op, b.Pos, b.Len})
	if b.Op == stack.OpWrite {
		c.writes = append(c.writes, append([]byte(nil), b.Data...))
	}
	if b.Private != nil {
		panic("the engine gave MapIO a Bio with a Private")
	}
	b.Private = b // the Bio's own address: EndIO must get the same Bio
	if c.act == stack.Done && b.Op == stack.OpRead {
		for i := range b.Data {
			b.Data[i] = 0xdd
		}
	}
	if c.rewrite != nil {
		c.rewrite(b)
	}
	return c.act, c.killErr
}

func (f *fake) EndIO(b *stack.Bio, err error) error {
	c := f.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ends = append(c.ends, endRec{bioRec{b.Op, b.Pos, b.Len}, err})
	if p, _ := b.Private.(*stack.Bio); p != b {
		c.lostPrivate++
	}
	return err
}

func (f *fake) Hold(b *stack.Bio) (time.Duration, func()) {
	c := f.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds = append(c.holds, bioRec{b.Op, b.Pos, b.Len})
	return c.wait, nil
}

func (f *fake) Failing() extent.Set {
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	return f.ctl.failing
}

func (f *fake) State() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []byte(f.state)
}

func (f *fake) Restore(b []byte) error {
	if len(b) == 0 || b[0] == '!' {
		return errors.New("fake: unreadable state")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = string(b)
	return nil
}

// Message: "set <state>" changes the state; "fail <start> <len>" makes the
// sectors fail and reports it as a change during I/O would.
func (f *fake) Message(args []string) (string, error) {
	switch {
	case len(args) == 2 && args[0] == "set":
		f.mu.Lock()
		f.state = args[1]
		f.mu.Unlock()
		return "ok", nil
	case len(args) == 3 && args[0] == "report":
		a, _ := strconv.ParseUint(args[1], 10, 64)
		n, _ := strconv.ParseUint(args[2], 10, 64)
		s := extent.Of(extent.Extent{Start: a, Len: n})
		f.ctl.set(func(c *fakeCtl) { c.failing = c.failing.Union(s) })
		f.ti.StateChanged(s, extent.Set{})
		return "", nil
	}
	return "", stack.Errorf("Unknown message", syscall.EINVAL)
}

func (f *fake) Dtr() {
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	f.ctl.dtrs[f]++
}

func (f *fake) PreSuspend() {
	f.ctl.set(func(c *fakeCtl) { c.events = append(c.events, "presuspend") })
}
func (f *fake) PostSuspend() {
	f.ctl.set(func(c *fakeCtl) { c.events = append(c.events, "postsuspend") })
}
func (f *fake) PreSuspendUndo() { f.ctl.set(func(c *fakeCtl) { c.events = append(c.events, "undo") }) }
func (f *fake) Resume()         { f.ctl.set(func(c *fakeCtl) { c.events = append(c.events, "resume") }) }

// fakeDelayOnly is a fake that only holds requests back: no MapIO, no
// EndIO.
type fakeDelayOnly struct{ f *fake }

func (d *fakeDelayOnly) Map(off uint64) (stack.Mapping, error)      { return d.f.Map(off) }
func (d *fakeDelayOnly) Rmap(c *stack.Dev, s extent.Set) extent.Set { return d.f.Rmap(c, s) }
func (d *fakeDelayOnly) Areas() []stack.Area                        { return d.f.Areas() }
func (d *fakeDelayOnly) Table() string                              { return d.f.Table() }
func (d *fakeDelayOnly) Status() string                             { return d.f.Status() }
func (d *fakeDelayOnly) Hold(b *stack.Bio) (time.Duration, func())  { return d.f.Hold(b) }
func (d *fakeDelayOnly) PreSuspend()                                { d.f.PreSuspend() }
func (d *fakeDelayOnly) PostSuspend()                               { d.f.PostSuspend() }
func (d *fakeDelayOnly) Resume()                                    { d.f.Resume() }
func (d *fakeDelayOnly) Dtr()                                       { d.f.Dtr() }

func (c *fakeCtl) Writes() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}
