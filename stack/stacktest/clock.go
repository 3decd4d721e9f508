package stacktest

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/daxstack/daxstack/stack"
)

// Clock is a stack.Clock that moves only when told (Advance, Set), for
// targets whose behaviour depends on time. The zero Clock reads 0 and boot
// "test-boot".
type Clock struct {
	mu   sync.Mutex
	now  time.Duration
	boot string
}

// NewClock returns a clock at now since boot.
func NewClock(now time.Duration) *Clock { return &Clock{now: now} }

// Boottime returns the clock's time.
func (c *Clock) Boottime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// BootID returns the clock's boot ID ("test-boot" unless SetBoot changed it).
func (c *Clock) BootID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.boot == "" {
		return "test-boot"
	}
	return c.boot
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

// Set puts the clock at now.
func (c *Clock) Set(now time.Duration) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// SetBoot changes the boot ID, as a reboot would (the time does not move).
func (c *Clock) SetBoot(id string) {
	c.mu.Lock()
	c.boot = id
	c.mu.Unlock()
}

// SetEnv gives p's targets clock c and a random source seeded with seed, so
// that time and chance repeat from run to run.
func SetEnv(p *stack.Pool, c *Clock, seed uint64) {
	p.SetTargetEnv(c, rand.New(rand.NewPCG(seed, seed)))
}

var _ stack.Clock = (*Clock)(nil)
