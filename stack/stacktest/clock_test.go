package stacktest_test

import (
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestClock: the clock moves only when told, and the pool gives it (and a
// seeded random source) to the targets it builds.
func TestClock(t *testing.T) {
	c := stacktest.NewClock(5 * time.Second)
	c.Advance(time.Second)
	if c.Boottime() != 6*time.Second || c.BootID() != "test-boot" {
		t.Fatalf("clock at %v, boot %q", c.Boottime(), c.BootID())
	}
	c.Set(time.Minute)
	c.SetBoot("other")
	if c.Boottime() != time.Minute || c.BootID() != "other" {
		t.Fatalf("clock at %v, boot %q", c.Boottime(), c.BootID())
	}
	var seen []*stack.TargetInfo
	var draws []uint64
	stack.Register(stack.TargetType{Name: "clockseen", New: func(ti *stack.TargetInfo, args []string) (stack.Target, error) {
		seen = append(seen, ti)
		draws = append(draws, ti.Rand().Uint64())
		if ti.Rand() != ti.Rand() {
			t.Error("Rand gives another source each time")
		}
		if len(args) > 0 {
			return nil, stack.Errorf("only looking", nil)
		}
		return fakeTarget{}, nil
	}})
	p := stack.NewPool(nil)
	stacktest.SetEnv(p, c, 7)
	d, _ := p.Create("d", "")
	p.LoadText(d, "0 8 clockseen\n8 8 clockseen x", "")
	if len(seen) != 2 || seen[0].Clock != stack.Clock(c) {
		t.Fatalf("the targets got %+v", seen)
	}
	if draws[0] == draws[1] {
		t.Fatalf("two targets of a table drew the same %d: they share a source", draws[0])
	}
	stacktest.SetEnv(p, c, 7)
	p.LoadText(d, "0 8 clockseen\n8 8 clockseen x", "")
	if len(draws) != 4 || draws[2] != draws[0] || draws[3] != draws[1] {
		t.Fatalf("the same seed gave %d, then %d", draws[:2], draws[2:])
	}
}

// fakeTarget maps nothing; TestClock's first segment builds one so that
// the second one's constructor runs too.
type fakeTarget struct{}

func (fakeTarget) Map(uint64) (stack.Mapping, error)      { return stack.Mapping{}, stack.ErrKill }
func (fakeTarget) Rmap(*stack.Dev, extent.Set) extent.Set { return extent.Set{} }
func (fakeTarget) Areas() []stack.Area                    { return nil }
func (fakeTarget) Table() string                          { return "" }
func (fakeTarget) Status() string                         { return "" }
