package blockdev

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/linux"
)

// Resolve tells whether s names one of the exports and returns the
// device's name: "major:minor" of a loop device, a link in LinkDir or
// MapperDir, the loop device node (or any path to it), or the device file
// in the devfs mount (or any path to it). A table that names one of them
// must be resolved to the mapped device itself: I/O must not go out
// through the kernel and back into the daemon.
func (m *Manager) Resolve(s string) (string, bool) {
	if d, err := linux.ParseDev(s); err == nil {
		return m.byDevName(d)
	}
	if filepath.IsAbs(s) {
		clean := filepath.Clean(s)
		dir, base := filepath.Dir(clean), filepath.Base(clean)
		if dir == m.o.LinkDir || (m.mapper && dir == m.o.MapperDir) {
			m.idx.RLock()
			e := m.byName[base]
			m.idx.RUnlock()
			if e != nil {
				for _, l := range e.Links {
					if l == clean {
						return e.Name, true
					}
				}
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(s, &st); err != nil {
		return "", false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return m.byDevName(linux.DevOf(st.Rdev))
	case unix.S_IFREG:
		if st.Dev == m.fs.Dev() {
			return m.fs.ResolveIno(st.Ino)
		}
	}
	return "", false
}

func (m *Manager) byDevName(d linux.Dev) (string, bool) {
	m.idx.RLock()
	defer m.idx.RUnlock()
	if e := m.byDev[d]; e != nil {
		return e.Name, true
	}
	return "", false
}
