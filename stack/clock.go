package stack

import (
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SystemClock is the machine's CLOCK_BOOTTIME and boot ID.
type SystemClock struct{}

// Boottime reads CLOCK_BOOTTIME.
func (SystemClock) Boottime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Duration(time.Now().UnixNano()) // never on Linux
	}
	return time.Duration(ts.Nano())
}

var (
	bootIDOnce sync.Once
	bootID     string
)

// BootID returns /proc/sys/kernel/random/boot_id, read once.
func (SystemClock) BootID() string {
	bootIDOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err == nil {
			bootID = strings.TrimSpace(string(b))
		}
	})
	return bootID
}

// SetTargetEnv sets the clock and the random source the pool gives the
// targets it builds from now on (tests make time and chance repeatable).
// A nil value keeps the current one.
func (p *Pool) SetTargetEnv(c Clock, r *rand.Rand) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil {
		p.clock = c
	}
	if r != nil {
		p.rnd = r
	}
}
