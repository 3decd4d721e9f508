package service

import (
	"context"
	"errors"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/service/sysfswatch"
	"github.com/daxstack/daxstack/service/uevent"
)

// watch runs the watchers until ctx ends: kernel uevents about known
// leaves, sysfs badblocks files, and the periodic rescan. Every trigger
// ends in Engine.Rescan, which compares recorded state with the system's
// and records what changed; uevents are hints, sysfs is the truth.
func (s *Server) watch(ctx context.Context) {
	rescan := make(chan string, 1)
	trigger := func(why string) {
		select {
		case rescan <- why:
		default: // a rescan is already pending; it will see this change too
		}
	}
	if s.cfg.Uevents {
		l, err := uevent.Listen(uevent.Options{Subsystems: []string{"block", "dax"}, RcvBuf: s.cfg.UeventRcvBuf})
		if err != nil {
			s.cfg.Logf("daxstack: uevents: %v (relying on rescans)", err)
		} else {
			go func() { <-ctx.Done(); l.Close() }()
			go s.uevents(ctx, l, trigger)
		}
	}
	bw, err := sysfswatch.New(sysfswatch.Options{Rescan: s.cfg.Rescan})
	if err != nil {
		s.cfg.Logf("daxstack: badblocks watcher: %v (relying on rescans)", err)
	} else {
		defer bw.Close()
	}
	watched := map[string]bool{}
	refreshFiles := func() {
		if bw == nil {
			return
		}
		files := s.eng.BadblocksFiles()
		for f := range files {
			if !watched[f] {
				if err := bw.Add(f); err == nil {
					watched[f] = true
				}
			}
		}
		for f := range watched {
			if _, ok := files[f]; !ok {
				bw.Remove(f)
				delete(watched, f)
			}
		}
	}
	// A table made live can bring a pmem leaf in: watch its badblocks
	// file from then on, not from the next rescan.
	swapped := make(chan struct{}, 1)
	_, stopWatch := s.eng.Watch(func(cs []control.DeviceChange) {
		for _, c := range cs {
			if c.Kind == control.Swapped || c.Kind == control.Created {
				select {
				case swapped <- struct{}{}:
				default:
				}
				return
			}
		}
	})
	defer stopWatch()
	refreshFiles()
	var changes <-chan sysfswatch.Change
	if bw != nil {
		changes = bw.Changes()
	}
	tick := time.NewTicker(s.cfg.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case why := <-rescan:
			s.doRescan(why)
			refreshFiles()
			if bw != nil {
				bw.Rescan() // re-read every badblocks file too: events may have been lost
			}
		case <-swapped:
			refreshFiles()
		case ch := <-changes:
			if ch.Err == nil || errors.Is(ch.Err, context.Canceled) {
				s.doRescan("badblocks " + ch.Path)
			} else {
				s.doRescan("badblocks " + ch.Path + ": " + ch.Err.Error())
			}
		case <-tick.C:
			s.doRescan("periodic")
			refreshFiles()
		}
	}
}

func (s *Server) doRescan(why string) {
	r, err := s.eng.Rescan(context.Background())
	if err != nil {
		s.cfg.Logf("daxstack: rescan (%s): %v", why, err)
		return
	}
	for _, l := range r.Lost {
		s.cfg.Logf("daxstack: leaf %s lost (%s)", l, why)
	}
	for _, l := range r.Restored {
		s.cfg.Logf("daxstack: leaf %s restored (%s)", l, why)
	}
	for _, l := range r.Changed {
		s.cfg.Logf("daxstack: leaf %s badblocks changed (%s)", l, why)
	}
	for _, l := range r.Shrunk {
		s.cfg.Logf("daxstack: leaf %s shrank: the sectors past its end are bad (%s)", l, why)
	}
	for _, l := range r.Grown {
		s.cfg.Logf("daxstack: leaf %s grew back (%s)", l, why)
	}
}

// uevents turns kernel uevents about recorded leaves into rescans. An
// overrun (events lost in the socket buffer) rescans everything.
func (s *Server) uevents(ctx context.Context, l *uevent.Listener, trigger func(string)) {
	for {
		ev, err := l.Next(ctx)
		switch {
		case errors.Is(err, uevent.ErrOverrun):
			trigger("uevent overrun")
			continue
		case err != nil:
			if ctx.Err() == nil && !errors.Is(err, uevent.ErrClosed) {
				s.cfg.Logf("daxstack: uevents: %v", err)
			}
			return
		}
		switch ev.Action {
		case "add", "remove", "change", "online", "offline", "bind", "unbind":
			if s.eng.KnownDevice(ev.DevName, ev.Major, ev.Minor) {
				trigger("uevent " + ev.Action + " " + ev.DevName)
			}
		}
	}
}
