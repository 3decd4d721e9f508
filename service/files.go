package service

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/fsfiles"
	"github.com/daxstack/daxstack/rmapchain"
)

// Files behind bad ranges, in the daemon.
//
// A mapped device's block device is the daemon's export of it, which the
// daemon is told through SetBlockDevice. The method "files" answers
// control.FilesReq with the daemon's filesystems (one fsfiles.FS per block
// device, kept current by its fanotify watch, so that a lookup never walks
// a tree again). It names files, so only peers allowed to administer (root
// and the daemon's group) may call it, and only root about a block device
// daxstack does not know (any filesystem of the machine).
//
// Events: the stream never waits for a lookup. After it sends an event of
// kind media-error or lost of a device whose block device has a mounted
// filesystem, it sends, to peers allowed to administer only, a follow-up
// event of kind "files" with the same seq, device, ranges and cause, and
// the files ("files": fsfiles.FileRow, bytes; at most maxEventFiles, then
// "files_truncated") and metadata ("metadata") those ranges hit, once the
// lookup is done. The lookup of an event runs once, whatever the number of
// streams. A follow-up is not logged: a stream that resumes from an older
// seq gets the follow-ups of the events it is sent again, looked up anew.
// Other peers get the events without names.

// KindFiles is the kind of the follow-up events that carry files.
const KindFiles rmapchain.Kind = "files"

// maxEventFiles bounds the file rows of one follow-up event.
const maxEventFiles = 1000

// Bounds on the follow-ups: the lookups remembered (by seq), those running
// at once, and those queued for one stream.
const (
	filesMemo     = 256
	filesWorkers  = 2
	filesQueueLen = 256
)

// SetBlockDevice tells the daemon how to find the block device a mapped
// device is exported as (the exports: a loop device over its FUSE file,
// linked as /dev/daxstack/NAME): fn returns its major:minor, or ok false
// when the device is not exported. It is called with a mapped device's
// name (as events name it) from any goroutine, without the engine's lock,
// and must not block for long. It may be set at any time. Without it, the
// daemon asks its own exports, when the Server has them (a method
// BlockDevice of the same shape); with neither (embedded mode, a daemon
// without exports) no mapped device has a filesystem: "files" says so and
// events carry no files.
func (s *Server) SetBlockDevice(fn func(device string) (major, minor uint32, ok bool)) {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	s.files.blockDevice = fn
}

// blockDeviceFunc returns the seam to the exports: SetBlockDevice's, else
// the Server's own BlockDevice method if it has one, else nil.
func (s *Server) blockDeviceFunc() func(string) (uint32, uint32, bool) {
	s.files.mu.Lock()
	fn := s.files.blockDevice
	s.files.mu.Unlock()
	if fn != nil {
		return fn
	}
	if x, ok := any(s).(interface {
		BlockDevice(string) (uint32, uint32, bool)
	}); ok {
		return x.BlockDevice
	}
	return nil
}

// filesState is the daemon's side of files: the seam to the exports, the
// filesystems, and the lookups of events.
type filesState struct {
	mu          sync.Mutex
	blockDevice func(device string) (major, minor uint32, ok bool)
	cache       *fsfiles.Cache
	ctx         context.Context // ends at close: lookups give up
	cancel      context.CancelFunc
	closed      bool
	jobs        map[uint64]*filesJob // by seq
	order       []uint64             // seqs of jobs, oldest first
	sem         chan struct{}
	queues      map[*conn]chan *filesJob
	wg          sync.WaitGroup
}

// filesJob is the lookup of one event's files.
type filesJob struct {
	done chan struct{}
	ev   *rmapchain.Event // the follow-up, or nil: none
}

// env returns what control needs for a lookup, starting the cache.
func (f *filesState) env(bd func(string) (uint32, uint32, bool)) (control.FilesEnv, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return control.FilesEnv{}, false
	}
	f.start()
	return control.FilesEnv{Cache: f.cache, BlockDevice: bd}, true
}

// start makes the cache on first use. f.mu is held.
func (f *filesState) start() {
	if f.cache != nil {
		return
	}
	f.cache = fsfiles.NewCache(fsfiles.Options{})
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.jobs = map[uint64]*filesJob{}
	f.queues = map[*conn]chan *filesJob{}
	f.sem = make(chan struct{}, filesWorkers)
}

// close stops the lookups and closes the filesystems (Serve's end, after
// every stream is gone).
func (f *filesState) close() {
	f.mu.Lock()
	f.closed = true
	cancel, cache := f.cancel, f.cache
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	f.wg.Wait()
	if cache != nil {
		cache.Close()
	}
}

// job returns the lookup of ev's files on the block devices bd says,
// started by its first caller; nil when ev carries no files (its kind, or
// no exports).
func (f *filesState) job(ev rmapchain.Event, bd func(string) (uint32, uint32, bool)) *filesJob {
	if bd == nil || ev.Kind != rmapchain.MediaError && ev.Kind != rmapchain.Lost {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.start()
	if j := f.jobs[ev.Seq]; j != nil {
		return j
	}
	j := &filesJob{done: make(chan struct{})}
	f.jobs[ev.Seq] = j
	f.order = append(f.order, ev.Seq)
	if len(f.order) > filesMemo {
		for _, q := range f.order[:len(f.order)-filesMemo/2] {
			delete(f.jobs, q)
		}
		f.order = append([]uint64(nil), f.order[len(f.order)-filesMemo/2:]...)
	}
	cache, ctx := f.cache, f.ctx
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(j.done)
		select {
		case f.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-f.sem }()
		j.ev = lookupEvent(ctx, bd, cache, ev)
	}()
	return j
}

// lookupEvent returns the follow-up of ev, or nil when its device has no
// block device, no mounted filesystem, or the lookup failed.
func lookupEvent(ctx context.Context, bd func(string) (uint32, uint32, bool), cache *fsfiles.Cache, ev rmapchain.Event) *rmapchain.Event {
	major, minor, ok := bd(ev.Device)
	if !ok || ev.Ranges.Empty() {
		return nil
	}
	// Metadata and free runs met before the files take entries of a
	// lookup's limit: twice the rows kept leaves room for them.
	res, err := cache.Lookup(ctx, major, minor, ev.Ranges, 2*maxEventFiles)
	if err != nil {
		// ErrNotMounted: no filesystem, so no files; any other failure
		// leaves the event as it was sent.
		return nil
	}
	return followUp(ev, res)
}

// followUp is the event of kind files that follows ev with what res says.
func followUp(ev rmapchain.Event, res fsfiles.Result) *rmapchain.Event {
	rep := res.Report(maxEventFiles)
	if len(rep.Metadata) > maxEventFiles {
		rep.Metadata, rep.FilesTruncated = rep.Metadata[:maxEventFiles], true
	}
	files, _ := json.Marshal(rep.Files)
	meta, _ := json.Marshal(rep.Metadata)
	return &rmapchain.Event{
		Seq: ev.Seq, Time: ev.Time, Kind: KindFiles, Device: ev.Device, Ranges: ev.Ranges, Cause: ev.Cause,
		Files: files, FilesTruncated: rep.FilesTruncated, Metadata: meta,
	}
}

// followFiles queues the follow-up of an event just sent on c's stream id,
// if c may see file names and the event has one. The follow-ups of a
// stream are sent in the order of their events, each when its lookup is
// done, by a goroutine of the stream's own that ends with ctx.
func (c *conn) followFiles(ctx context.Context, id uint64, ev rmapchain.Event) {
	bd := c.s.blockDeviceFunc()
	if bd == nil || ev.Kind != rmapchain.MediaError && ev.Kind != rmapchain.Lost {
		return
	}
	f := &c.s.files
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.start()
	q, ok := f.queues[c]
	if !ok {
		// Once per stream: whether its peer may see names (nil: not),
		// and a goroutine of its own that forgets it when it ends.
		if c.privileged() {
			q = make(chan *filesJob, filesQueueLen)
		}
		f.queues[c] = q
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			c.sendFollowUps(ctx, id, q)
		}()
	}
	f.mu.Unlock()
	if q == nil {
		return
	}
	j := f.job(ev, bd)
	if j == nil {
		return
	}
	select {
	case q <- j:
	default:
		c.s.cfg.Logf("daxstack: files of event %d not sent to pid %d: %d follow-ups already wait", ev.Seq, c.cred.Pid, filesQueueLen)
	}
}

// sendFollowUps sends the follow-ups queued for a stream until it ends (a
// nil queue: none, only the end is waited for).
func (c *conn) sendFollowUps(ctx context.Context, id uint64, q chan *filesJob) {
	defer func() {
		c.s.files.mu.Lock()
		delete(c.s.files.queues, c)
		c.s.files.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			select {
			case <-j.done:
			case <-ctx.Done():
				return
			}
			if j.ev == nil {
				continue
			}
			if err := c.send(response{ID: id, Event: j.ev}); err != nil {
				return
			}
		}
	}
}

// connKey carries the connection a method runs for in its context.
type connKey struct{}

// connOf returns the connection a method runs for.
func connOf(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

func init() {
	reg("files", rightQuery, func(a control.API, ctx context.Context, r control.FilesReq) (control.FilesResp, error) {
		c := connOf(ctx)
		if c == nil {
			return control.FilesResp{}, fmt.Errorf("%w: files: no connection", control.ErrInternal)
		}
		if !c.privileged() {
			return control.FilesResp{}, c.refuse("files names the files on a device")
		}
		env, ok := c.s.files.env(c.s.blockDeviceFunc())
		if !ok {
			return control.FilesResp{}, control.ErrClosed
		}
		env.OnlyKnown = c.cred.Uid != 0
		return c.s.eng.FilesWith(ctx, r, env)
	})
}

// Files asks the daemon what a device's bad ranges hit on its filesystem.
func (c *Client) Files(ctx context.Context, r control.FilesReq) (control.FilesResp, error) {
	return invoke[control.FilesResp](c, ctx, "files", r)
}
