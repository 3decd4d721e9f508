package fsfiles

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// mountTable is the mount table of this process, read again only when
// the kernel says it changed: a mountinfo file kept open reports every
// change of the namespace's mounts to poll(2) as POLLPRI (the way
// libmount's monitor watches it). A table read from anywhere but /proc is
// read at every use.
type mountTable struct {
	path   string
	f      *os.File
	mounts []Mount
}

// get returns the current mounts.
func (t *mountTable) get() ([]Mount, error) {
	if !strings.HasPrefix(t.path, "/proc/") {
		return readMountInfo(t.path)
	}
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return nil, err
		}
		t.f = f
	} else if !t.changed() {
		return t.mounts, nil
	}
	return t.read()
}

// read reads the table now, whatever poll(2) says: it does not report
// every change (an unmount has been seen to go unreported), so a caller
// that finds the table at odds with the system reads it again.
func (t *mountTable) read() ([]Mount, error) {
	ms, err := readMountInfo(t.path)
	if err != nil {
		return nil, err
	}
	t.mounts = ms
	return ms, nil
}

// changed polls the open mountinfo without waiting.
func (t *mountTable) changed() bool {
	fds := []unix.PollFd{{Fd: int32(t.f.Fd()), Events: unix.POLLPRI}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0
	}
}

func (t *mountTable) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	t.mounts = nil
}
