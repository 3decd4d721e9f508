package stacktest_test

import (
	"testing"
	"time"

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
	stack.Register(stack.TargetType{Name: "clockseen", New: func(ti *stack.TargetInfo, _ []string) (stack.Target, error) {
		seen = append(seen, ti)
		return nil, stack.Errorf("only looking", nil)
	}})
	p := stack.NewPool(nil)
	stacktest.SetEnv(p, c, 7)
	d, _ := p.Create("d", "")
	p.LoadText(d, "0 8 clockseen", "")
	if len(seen) != 1 || seen[0].Clock != stack.Clock(c) || seen[0].Rand == nil {
		t.Fatalf("the target got %+v", seen)
	}
	a := seen[0].Rand.Uint64()
	stacktest.SetEnv(p, c, 7)
	p.LoadText(d, "0 8 clockseen", "")
	if b := seen[1].Rand.Uint64(); a != b {
		t.Fatalf("the same seed gave %d and %d", a, b)
	}
}
