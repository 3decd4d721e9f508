package stack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
)

// Name limits, from the kernel's dm-ioctl.h (lengths include the NUL).
const (
	NameLen = 128 // DM_NAME_LEN
	UUIDLen = 129 // DM_UUID_LEN
)

// ErrLoop: a table would make a device depend on itself.
var ErrLoop = errno.New("device would depend on itself", syscall.ELOOP)

// Pool holds the mapped devices and leaves daxstack knows, and the graph
// they form. The zero Pool is not usable; call NewPool.
type Pool struct {
	mu      sync.RWMutex
	open    LeafOpener
	byName  map[string]*Device
	byUUID  map[string]*Device
	byMinor map[uint32]*Device
	leaves  map[string]*Dev // every open leaf, by Leaf.ID (see leaves.go)
	users   map[*Dev]int    // tables (either slot, any device) using each child
	holders map[*Dev]string // external holders
	refs    map[*Dev]int    // other references to leaves (AcquireLeaf, tables built to the side)

	gen   uint64 // bumped whenever an active table or the device set changes
	graph graphCache

	gate gate

	// maps keeps every mapped device's compiled map, rebuilt at each
	// table swap; noCompiled keeps them unpublished (SetCompiledMaps).
	// Both are guarded by mu; see compiled_pool.go.
	maps       *CompiledMaps
	noCompiled bool

	// wake is closed (and replaced) whenever a device resumes or is
	// removed, or one's held requests drop to none: waiters look again.
	wakeMu sync.Mutex
	wake   chan struct{}

	txn *Txn // the transaction recording changes, or nil

	noWait   atomic.Bool                        // fail I/O to suspended devices instead of waiting
	onChange atomic.Pointer[func(TargetChange)] // TargetInfo.StateChanged goes here

	clock Clock      // given to targets (TargetInfo.Clock)
	rnd   *rand.Rand // seeds the targets' own sources (TargetInfo.Rand)
}

// NewPool returns an empty pool that opens leaves with open. open may be
// nil, in which case tables can only name mapped devices.
func NewPool(open LeafOpener) *Pool {
	p := &Pool{
		open:    open,
		byName:  map[string]*Device{},
		byUUID:  map[string]*Device{},
		byMinor: map[uint32]*Device{},
		leaves:  map[string]*Dev{},
		users:   map[*Dev]int{},
		holders: map[*Dev]string{},
		refs:    map[*Dev]int{},
		maps:    NewCompiledMaps(),

		noCompiled: compiledOff(),
		wake:       make(chan struct{}),
		clock:      SystemClock{},
		rnd:        rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	return p
}

// SetNoWait makes requests that reach a suspended device fail at once
// with a *SuspendedError (matching EAGAIN) instead of waiting for the
// resume, for a process in which nothing could resume it.
func (p *Pool) SetNoWait(on bool) { p.noWait.Store(on) }

// OnTargetChange sets the function that hears targets' changes of state
// during I/O (TargetInfo.StateChanged); nil stops it. It is called from
// the I/O path and must not block.
func (p *Pool) OnTargetChange(fn func(TargetChange)) {
	if fn == nil {
		p.onChange.Store(nil)
		return
	}
	p.onChange.Store(&fn)
}

// broadcast wakes every waiter (see Pool.wake).
func (p *Pool) broadcast() {
	p.wakeMu.Lock()
	close(p.wake)
	p.wake = make(chan struct{})
	p.wakeMu.Unlock()
}

func (p *Pool) wakeChan() <-chan struct{} {
	p.wakeMu.Lock()
	defer p.wakeMu.Unlock()
	return p.wake
}

// waitResume waits until d is running again (or removed), or ctx ends.
func (p *Pool) waitResume(ctx context.Context, d *Device) error {
	for {
		ch := p.wakeChan()
		if !d.suspended.Load() || d.removed.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitIdle waits until no request is held by d (see Device.held), or ctx
// ends.
func (p *Pool) waitIdle(ctx context.Context, d *Device) error {
	for {
		ch := p.wakeChan()
		if d.held.Load() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckName checks a mapped device name as dmsetup and the kernel do.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: device name cannot be empty", ErrInvalid)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%w: Name \"%s\" invalid. It contains \"/\".", ErrInvalid, name)
	case name == "control" || name == "." || name == "..":
		return fmt.Errorf("%w: device name cannot be \"control\", \".\", or \"..\"", ErrInvalid)
	case len(name) >= NameLen:
		return fmt.Errorf("%w: Name \"%s\" too long.", ErrInvalid, name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		// A tab or a newline would break every line-based report.
		return fmt.Errorf("%w: Name %q invalid. It contains a control character.", ErrInvalid, name)
	}
	return nil
}

// CheckUUID checks a UUID's length as dmsetup does.
func CheckUUID(uuid string) error {
	if len(uuid) >= UUIDLen {
		return fmt.Errorf("%w: UUID \"%s\" too long.", ErrInvalid, uuid)
	}
	return nil
}

// Create adds a mapped device with no table, taking the lowest free minor.
func (p *Pool) Create(name, uuid string) (*Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	minor := uint32(0)
	for p.byMinor[minor] != nil {
		minor++
	}
	return p.create(name, uuid, minor)
}

// CreateMinor adds a mapped device with no table and the given minor.
func (p *Pool) CreateMinor(name, uuid string, minor uint32) (*Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byMinor[minor] != nil {
		return nil, fmt.Errorf("%w: minor %d is in use by %s", ErrExists, minor, p.byMinor[minor].Name())
	}
	return p.create(name, uuid, minor)
}

func (p *Pool) create(name, uuid string, minor uint32) (*Device, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := CheckUUID(uuid); err != nil {
		return nil, err
	}
	if p.byName[name] != nil {
		return nil, fmt.Errorf("%w: a device named %s exists", ErrExists, name)
	}
	if uuid != "" && p.byUUID[uuid] != nil {
		return nil, fmt.Errorf("%w: uuid %s is in use by %s", ErrExists, uuid, p.byUUID[uuid].Name())
	}
	d := &Device{pool: p, minor: minor, lc: make(chan struct{}, 1), delayWake: make(chan struct{})}
	d.dev.md = d
	d.name.Store(&name)
	d.uuid.Store(&uuid)
	p.insert(d)
	p.record(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.unlink(d)
		d.removed.Store(true)
		p.maps.Forget(d)
	})
	return d, nil
}

// insert and unlink add d to the pool's indexes and take it out.
func (p *Pool) insert(d *Device) {
	p.byName[d.Name()] = d
	if u := d.UUID(); u != "" {
		p.byUUID[u] = d
	}
	p.byMinor[d.minor] = d
	p.gen++
}

func (p *Pool) unlink(d *Device) {
	delete(p.byName, d.Name())
	if u := d.UUID(); u != "" {
		delete(p.byUUID, u)
	}
	delete(p.byMinor, d.minor)
	p.gen++
}

// Device finds a mapped device by name, /dev/mapper/NAME, or 0:minor.
func (p *Pool) Device(ref string) (*Device, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d := p.lookupMapped(ref); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

// DeviceByUUID finds a mapped device by UUID.
func (p *Pool) DeviceByUUID(uuid string) (*Device, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d := p.byUUID[uuid]; d != nil && uuid != "" {
		return d, nil
	}
	return nil, fmt.Errorf("%w: uuid %s", ErrNotFound, uuid)
}

func (p *Pool) lookupMapped(ref string) *Device {
	if ma, mi, ok := parseDevno(ref); ok {
		if ma == MappedMajor {
			return p.byMinor[mi]
		}
		return nil
	}
	return p.byName[strings.TrimPrefix(ref, MapperDir)]
}

// Devices returns every mapped device, sorted by name.
func (p *Pool) Devices() []*Device {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*Device, 0, len(p.byName))
	for _, d := range p.byName {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Device) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}
