package fsfiles

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The fanotify watch of one filesystem: a mark on the whole filesystem
// (FAN_MARK_FILESYSTEM) for data changes (FAN_MODIFY, FAN_CLOSE_WRITE: the
// latter also covers writes through a shared mapping, which raise no
// FAN_MODIFY, when the file's last reference goes) and directory entry
// changes (FAN_CREATE, FAN_DELETE, FAN_RENAME, for directories too),
// reported by file handle (FAN_REPORT_FID, FAN_REPORT_DFID_NAME,
// FAN_REPORT_TARGET_FID), so no descriptor is ever opened for us and
// nothing keeps the filesystem from being unmounted.
//
// A goroutine reads events as they come and keeps them, changes of data
// merged per file; a Lookup takes what was kept and applies it. When the
// kernel's queue overflows, or more is kept than the bounds below, events
// are lost and the index is rebuilt by the next Lookup.
const (
	fanInitFlags = unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK |
		unix.FAN_REPORT_FID | unix.FAN_REPORT_DFID_NAME | unix.FAN_REPORT_TARGET_FID
	fanMask = fanModify | fanCloseWrite | fanCreate | fanDelete | fanRename | fanOnDir

	maxDirty   = 1 << 20 // files changed between two lookups
	maxDirents = 1 << 20 // directory entry events between two lookups
)

type watcher struct {
	f  *os.File
	rc syscall.RawConn

	mu      sync.Mutex
	buf     []byte                 // read buffer of drain, under mu
	dirty   map[fanHandle]struct{} // files whose data changed
	dirents []fanEvent             // directory entry events, in order
	lost    bool                   // events were lost: the index cannot be trusted
	err     error                  // the reader stopped
	done    chan struct{}
}

// watchFS starts watching the filesystem that path is on.
// Before Linux 5.17 FAN_REPORT_TARGET_FID is refused (EINVAL); a watch
// without it learns the inode a new entry names from the entry itself.
func watchFS(path string) (*watcher, error) { return watchFSFlags(path, fanInitFlags) }

func watchFSFlags(path string, flags uint) (*watcher, error) {
	fd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err == unix.EINVAL && flags&unix.FAN_REPORT_TARGET_FID != 0 {
		return watchFSFlags(path, flags&^unix.FAN_REPORT_TARGET_FID)
	}
	if err != nil {
		return nil, err
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMask, unix.AT_FDCWD, path); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &watcher{f: f, rc: rc, dirty: map[fanHandle]struct{}{}, done: make(chan struct{})}
	go w.read()
	return w, nil
}

// read takes events as they come until the descriptor is closed.
func (w *watcher) read() {
	defer close(w.done)
	err := w.rc.Read(func(fd uintptr) bool {
		w.drainLocked(int(fd))
		return false // wait for more
	})
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// drain reads what the kernel has queued now, so that a Lookup sees every
// change made before it started.
func (w *watcher) drain() {
	_ = w.rc.Control(func(fd uintptr) { w.drainLocked(int(fd)) })
}

// drainLocked reads events until the queue is empty, under w.mu, so that
// the reader and drain keep events in order.
func (w *watcher) drainLocked(fd int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	buf := w.buf
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) && w.err == nil {
				w.err = err
			}
			return
		}
		if perr := parseFanEvents(buf[:n], w.keep); perr != nil {
			w.lost = true
		}
	}
}

// keep records one event. w.mu is held.
func (w *watcher) keep(ev fanEvent) {
	switch {
	case ev.OverflowOrError:
		w.lost = true
	case ev.Mask&(fanCreate|fanDelete|fanRename) != 0:
		if len(w.dirents) >= maxDirents {
			w.lost = true
			return
		}
		w.dirents = append(w.dirents, ev)
	case ev.Mask&(fanModify|fanCloseWrite) != 0 && ev.HasObj:
		if len(w.dirty) >= maxDirty {
			w.lost = true
			return
		}
		w.dirty[ev.Obj] = struct{}{}
	}
}

// take returns and forgets what was kept (dirty is nil when no data
// changed); lost is true when events were lost since the last take (or
// the watch stopped).
func (w *watcher) take() (dirty map[fanHandle]struct{}, dirents []fanEvent, lost bool) {
	w.drain()
	w.mu.Lock()
	defer w.mu.Unlock()
	dirents, lost = w.dirents, w.lost || w.err != nil
	if len(w.dirty) > 0 {
		dirty, w.dirty = w.dirty, map[fanHandle]struct{}{}
	}
	w.dirents, w.lost = nil, false
	return dirty, dirents, lost
}

// pressing reports whether more than n changes wait, or events were lost.
func (w *watcher) pressing(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost || w.err != nil || len(w.dirty)+len(w.dirents) > n
}

// broken reports whether the reader stopped.
func (w *watcher) broken() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

func (w *watcher) close() {
	w.f.Close()
	<-w.done
}
