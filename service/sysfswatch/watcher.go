package sysfswatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// These errors can be returned by this package. Match them with errors.Is.
var (
	// ErrClosed is returned by Add after Close. It wraps os.ErrClosed.
	ErrClosed = fmt.Errorf("sysfswatch: watcher closed: %w", os.ErrClosed)
	// ErrNotRegular is returned (in an *os.PathError) for a path that is
	// not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is reported (in an *os.PathError) for a file longer
	// than MaxSize.
	ErrTooLarge = fmt.Errorf("larger than %d bytes", MaxSize)
)

// DefaultRescan is the interval between periodic re-reads when
// Options.Rescan is zero.
const DefaultRescan = 10 * time.Second

// DefaultPoll is the interval between re-reads of the open files when
// Options.Poll is zero. A pmem disk's badblocks file changes without a
// notification when someone writes to it (the kernel's badblocks_store
// does not call sysfs_notify), so such a change is seen within
// DefaultPoll plus one read: about a quarter of a second.
const DefaultPoll = 250 * time.Millisecond

// Options configure New.
type Options struct {
	// Rescan is the interval at which every path is looked up and
	// re-read even without a notification. Zero means DefaultRescan.
	Rescan time.Duration
	// Poll is the interval at which every file that was read fine last
	// time is read again through the descriptor already open (no path
	// lookup, no allocation unless the content changed): this is what
	// sees changes nobody notifies. Zero means DefaultPoll; a negative
	// value turns it off, leaving poll(2) and Rescan.
	Poll time.Duration
}

// Change is the content of a watched file after a change, or the error
// that keeps it from being read.
type Change struct {
	Path string // as given to Add
	Data []byte // the whole content; nil when Err is set
	// Err is an *os.PathError when the file cannot be read; it matches
	// os.ErrNotExist (ENOENT) when the file is gone.
	Err error
}

// Watcher watches files for changes. Its methods may be called from any
// goroutine.
type Watcher struct {
	rescan  time.Duration
	poll    time.Duration // 0: off
	changes chan Change
	efd     int           // eventfd that wakes poll
	kick    chan struct{} // wakes the goroutine while it waits to deliver
	exited  chan struct{}

	mu     sync.Mutex // guards the fields below and writes to efd
	closed bool
	cmds   []command
}

type commandKind int

const (
	cmdAdd commandKind = iota
	cmdRemove
	cmdRescan
)

type command struct {
	kind commandKind
	path string
	fd   int // cmdAdd: the descriptor Add opened
	st   unix.Stat_t
}

// New starts a Watcher with no paths.
func New(o Options) (*Watcher, error) {
	rescan := o.Rescan
	if rescan <= 0 {
		rescan = DefaultRescan
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("sysfswatch: eventfd: %w", err)
	}
	poll := o.Poll
	switch {
	case poll == 0:
		poll = DefaultPoll
	case poll < 0:
		poll = 0
	}
	w := &Watcher{
		rescan:  rescan,
		poll:    poll,
		changes: make(chan Change, 16),
		efd:     efd,
		kick:    make(chan struct{}, 1),
		exited:  make(chan struct{}),
	}
	go w.loop()
	return w, nil
}

// Changes returns the channel on which changes are sent. It is closed
// after Close.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Add starts watching path, which must be an existing regular file
// (every sysfs attribute is one). Its current content is read and sent as
// the first Change. Adding a path already watched does nothing. Errors
// are *os.PathError (matching os.ErrNotExist, ErrNotRegular, ...) or
// ErrClosed.
func (w *Watcher) Add(path string) error {
	fd, st, err := openRegular(path)
	if err != nil {
		return fmt.Errorf("sysfswatch: add: %w", err)
	}
	if err := w.submit(command{kind: cmdAdd, path: path, fd: fd, st: st}); err != nil {
		unix.Close(fd)
		return err
	}
	return nil
}

// Remove stops watching path. A Change for it that is already in the
// channel's buffer may still be received. Removing a path not watched,
// or after Close, does nothing.
func (w *Watcher) Remove(path string) {
	w.submit(command{kind: cmdRemove, path: path})
}

// Rescan has every path looked up and re-read now, as the periodic rescan
// does; changes found are sent as usual. It does not wait for the reads.
func (w *Watcher) Rescan() {
	w.submit(command{kind: cmdRescan})
}

// Close stops the watcher, closes its files and then the Changes channel.
// It may be called more than once, and returns nil.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.wakeLocked()
	}
	w.mu.Unlock()
	<-w.exited
	return nil
}

func (w *Watcher) submit(c command) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.cmds = append(w.cmds, c)
	w.wakeLocked()
	return nil
}

// wakeLocked wakes the goroutine wherever it waits: in poll (eventfd) or
// on delivery (kick).
func (w *Watcher) wakeLocked() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(w.efd, one[:]) // an error would mean it is already awake
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// take returns the pending commands and whether the watcher is closed.
func (w *Watcher) take() ([]command, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cmds := w.cmds
	w.cmds = nil
	return cmds, w.closed
}

// loop is the Watcher's goroutine: it owns the files and the queue of
// changes not yet delivered.
func (w *Watcher) loop() {
	files := map[string]*file{}
	var out []Change // undelivered, at most one per path
	var buf []byte   // read buffer, reused
	queue := func(f *file, data []byte, err error) {
		if !f.update(data, err) {
			return
		}
		c := Change{Path: f.path, Err: f.err}
		if f.err == nil {
			c.Data = slices.Clone(f.data)
			if c.Data == nil {
				c.Data = []byte{}
			}
		}
		if i := slices.IndexFunc(out, func(o Change) bool { return o.Path == f.path }); i >= 0 {
			out[i] = c
		} else {
			out = append(out, c)
		}
	}
	// readFD re-reads f through its descriptor, after a wake-up.
	readFD := func(f *file) bool {
		var err error
		buf, err = readAll(f.fd, buf)
		if err != nil {
			return false
		}
		f.armed = true
		queue(f, buf, nil)
		return true
	}
	// readPath looks f's path up again, reopens it if it is a new file,
	// and re-reads it.
	readPath := func(f *file) {
		var st unix.Stat_t
		err := unix.Stat(f.path, &st)
		for err == unix.EINTR {
			err = unix.Stat(f.path, &st)
		}
		if err != nil {
			f.closeFD()
			queue(f, nil, &os.PathError{Op: "stat", Path: f.path, Err: err})
			return
		}
		if f.fd < 0 || st.Dev != f.dev || st.Ino != f.ino {
			fd, st, err := openRegular(f.path)
			f.closeFD()
			if err != nil {
				queue(f, nil, err)
				return
			}
			f.fd, f.dev, f.ino = fd, st.Dev, st.Ino
		}
		if buf, err = readAll(f.fd, buf); err != nil {
			f.armed = false // until a rescan reads it fine again
			queue(f, nil, &os.PathError{Op: "read", Path: f.path, Err: err})
			return
		}
		f.armed = true
		queue(f, buf, nil)
	}

	defer func() {
		for _, f := range files {
			f.closeFD()
		}
		cmds, _ := w.take()
		for _, c := range cmds {
			if c.kind == cmdAdd {
				unix.Close(c.fd)
			}
		}
		unix.Close(w.efd)
		close(w.changes)
		close(w.exited)
	}()

	next := time.Now().Add(w.rescan)
	nextPoll := time.Now().Add(w.poll)
	var pfds []unix.PollFd
	var polled []*file
	for {
		cmds, closed := w.take()
		if closed {
			return
		}
		for _, c := range cmds {
			switch c.kind {
			case cmdAdd:
				if files[c.path] != nil {
					unix.Close(c.fd)
					continue
				}
				f := &file{path: c.path, fd: c.fd, dev: c.st.Dev, ino: c.st.Ino}
				files[c.path] = f
				if !readFD(f) {
					readPath(f) // reports the error
				}
			case cmdRemove:
				if f := files[c.path]; f != nil {
					f.closeFD()
					delete(files, c.path)
					out = slices.DeleteFunc(out, func(o Change) bool { return o.Path == c.path })
				}
			case cmdRescan:
				next = time.Now() // below
			}
		}
		if now := time.Now(); !now.Before(next) {
			for _, f := range files {
				readPath(f)
			}
			next = now.Add(w.rescan)
			nextPoll = now.Add(w.poll)
		} else if w.poll > 0 && !now.Before(nextPoll) {
			// The cheap re-read: through the open descriptors, of the
			// files whose last read succeeded; the others wait for a
			// rescan. Unchanged content queues nothing.
			for _, f := range files {
				if f.fd >= 0 && f.armed && !readFD(f) {
					readPath(f)
				}
			}
			nextPoll = now.Add(w.poll)
		}

		if len(out) > 0 {
			// The reader is slow: wait for it, but not for a command.
			// Files are not polled meanwhile; a notification stays
			// pending until they are.
			select {
			case w.changes <- out[0]:
				out = out[1:]
			case <-w.kick:
			}
			continue
		}

		pfds = append(pfds[:0], unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN})
		polled = polled[:0]
		for _, f := range files {
			if f.fd >= 0 && f.armed {
				pfds = append(pfds, unix.PollFd{Fd: int32(f.fd), Events: unix.POLLPRI})
				polled = append(polled, f)
			}
		}
		wake := next
		if w.poll > 0 && nextPoll.Before(wake) {
			wake = nextPoll
		}
		timeout := time.Until(wake)
		ms := int(min(math.MaxInt32, max(0, (timeout+time.Millisecond-1)/time.Millisecond)))
		n, err := unix.Poll(pfds, ms)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			// Cannot poll (too many descriptors?): rely on rescans.
			select {
			case <-w.kick:
			case <-time.After(time.Until(wake)):
			}
			continue
		case n == 0:
			continue
		}
		if pfds[0].Revents != 0 {
			var b [8]byte
			unix.Read(w.efd, b[:])
		}
		for i, f := range polled {
			if pfds[i+1].Revents&(unix.POLLPRI|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == 0 {
				continue
			}
			if pfds[i+1].Revents&unix.POLLNVAL != 0 {
				f.fd, f.armed = -1, false // not ours to close: cannot happen
			}
			if f.fd < 0 || !readFD(f) {
				// Gone, replaced or failing: look at the path.
				readPath(f)
			}
		}
	}
}
