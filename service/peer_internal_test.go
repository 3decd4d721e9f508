package service

import (
	"slices"
	"testing"
)

// TestRights pins what each wire method needs: only reports are open to
// anyone who can connect; a new method must be placed here on purpose.
func TestRights(t *testing.T) {
	reports := []string{"version", "targets", "list", "info", "table", "status", "map", "rmap", "badblocks",
		"events", "canonical", "leaves", methodSubscribe,
		// files names files, which only root and the group may see: the
		// method checks the peer itself (service/files.go, tested there),
		// because unprivileged watchers still get events without names.
		"files"}
	for _, m := range append(methodNames(), methodSubscribe, methodOpen) {
		r, what := rightOf(m)
		switch {
		case slices.Contains(reports, m):
			if r != rightQuery {
				t.Errorf("%s: right %d, want a report's", m, r)
			}
		case m == methodOpen:
			if r != rightData || what == "" {
				t.Errorf("open (device data): right %d %q, want rightData", r, what)
			}
		default:
			if r != rightChange || what == "" {
				t.Errorf("%s: right %d %q, want rightChange", m, r, what)
			}
		}
	}
}
