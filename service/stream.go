package service

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// Event streams: a subscribed connection gets every logged event after
// its start that concerns its devices, and acknowledges what it handled,
// which a pre-remove waits for.

// maxUnacked bounds the pre-remove events remembered for a client that
// never acknowledges; the oldest are forgotten (and no longer waited for).
const maxUnacked = 1024

// ack records that the client handled every event up to seq.
func (c *conn) ack(seq uint64) {
	c.amu.Lock()
	defer c.amu.Unlock()
	c.acked = max(c.acked, seq)
	c.unacked = slices.DeleteFunc(c.unacked, func(q uint64) bool { return q <= c.acked })
}

// sending records that the pre-remove event seq is about to be sent.
func (c *conn) sending(seq uint64) {
	c.amu.Lock()
	defer c.amu.Unlock()
	if seq > c.acked {
		if len(c.unacked) >= maxUnacked {
			c.unacked = c.unacked[1:]
		}
		c.unacked = append(c.unacked, seq)
	}
}

// advance records that the stream has read the log up to seq.
func (c *conn) advance(seq uint64) {
	c.amu.Lock()
	c.pos = max(c.pos, seq)
	c.amu.Unlock()
}

// handled reports whether the subscriber is done with event seq: it
// acknowledged it, or its stream went past it without sending it (the
// event is not for its devices).
func (c *conn) handled(seq uint64) bool {
	c.amu.Lock()
	defer c.amu.Unlock()
	return c.acked >= seq || (c.pos >= seq && !slices.Contains(c.unacked, seq))
}

// subscribe checks a subscription request and, for a holder, claims its
// devices for this connection; the stream then follows the devices by the
// names events give them.
func (c *conn) subscribe(ctx context.Context, req request) (SubscribeReq, error) {
	var sub SubscribeReq
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &sub); err != nil {
			return sub, fmt.Errorf("%w: subscribe: %v", control.ErrUsage, err)
		}
	}
	if c.subbed.Load() {
		return sub, fmt.Errorf("%w: already subscribed", control.ErrUsage)
	}
	if sub.Holder != "" {
		if len(sub.Devices) == 0 {
			return sub, fmt.Errorf("%w: subscribe: a holder must name the devices it claims", control.ErrUsage)
		}
		if err := c.mayCall("claim"); err != nil {
			return sub, err
		}
		var made []control.ClaimReq
		for i, dev := range sub.Devices {
			cl, err := c.claim(c.forPeer(ctx, req.Dir), control.ClaimReq{Device: dev, Holder: sub.Holder})
			if err != nil {
				for _, m := range made {
					c.release(m)
				}
				return sub, err
			}
			made = append(made, cl)
			sub.Devices[i] = cl.Device
		}
	} else if len(sub.Devices) > 0 {
		// Follow the devices by the names events give them (a watcher
		// may say /dev/mapper/top, 0:1 or a leaf's path).
		names, err := c.s.eng.Canonical(ctx, control.NamesReq{Names: sub.Devices})
		if err != nil {
			return sub, err
		}
		sub.Devices = names
	}
	c.amu.Lock()
	c.pos = sub.Since
	c.amu.Unlock()
	c.subbed.Store(true)
	return sub, nil
}

// stream sends a subscriber every logged event after sub.Since that
// concerns its devices: first those in the log, then each commit's. A
// stream that keeps up takes committed events from memory (recent); one
// that is behind (it resumed from an old SEQ, or fell behind by more than
// recent holds) reads the log, which stays the source of truth.
func (c *conn) stream(ctx context.Context, id uint64, sub SubscribeReq) {
	since := sub.Since
	send := func(ev rmapchain.Event) bool {
		if ev.Kind == rmapchain.PreRemove {
			c.sending(ev.Seq)
		}
		if err := c.send(response{ID: id, Event: &ev}); err != nil {
			return false
		}
		c.advance(ev.Seq)
		c.followFiles(ctx, id, ev) // files.go
		return true
	}
	for {
		wake := c.s.wakeChan()
		if evs, next, ok := c.s.recent.after(since, sub.Devices); ok {
			for _, ev := range evs {
				if !send(ev) {
					return
				}
			}
			since = next
			c.advance(since)
		} else {
			for {
				page, err := c.s.eng.Events(ctx, control.EventsReq{Since: since, Devices: sub.Devices, Limit: 1024})
				if err != nil {
					c.send(response{ID: id, Error: control.EncodeError(err)})
					return
				}
				for _, ev := range page.Events {
					if !send(ev) {
						return
					}
					since = ev.Seq
				}
				if len(page.Events) < 1024 {
					since = max(since, page.Last)
					c.advance(since)
					break
				}
			}
		}
		c.s.ackChanged() // the stream moved: pre-remove waits look again
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// recentEvents keeps the events of the latest commits, with consecutive
// sequence numbers, as the engine's listener hands them over after each
// commit, so that streams that keep up need neither the engine's lock nor
// a read of the log.
type recentEvents struct {
	mu  sync.Mutex
	evs []rmapchain.Event
}

// recentMax bounds recentEvents; a stream further behind reads the log.
const recentMax = 4096

// add appends a commit's events. Anything but the next sequence numbers
// (which the daemon, the only writer, never commits) starts over.
func (r *recentEvents) add(evs []rmapchain.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		if n := len(r.evs); n > 0 && ev.Seq != r.evs[n-1].Seq+1 {
			r.evs = r.evs[:0]
		}
		r.evs = append(r.evs, ev)
	}
	if len(r.evs) > recentMax {
		r.evs = slices.Clone(r.evs[len(r.evs)-recentMax/2:])
	}
}

// after returns the events after since that concern devices (all when
// empty) and the sequence number to resume from, if it holds every event
// after since; ok is false when the log must be read instead.
func (r *recentEvents) after(since uint64, devices []string) (evs []rmapchain.Event, next uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.evs) == 0 || since+1 < r.evs[0].Seq {
		return nil, since, false
	}
	last := r.evs[len(r.evs)-1].Seq
	if since >= last {
		return nil, since, true
	}
	for _, ev := range r.evs[since+1-r.evs[0].Seq:] {
		if len(devices) == 0 || slices.Contains(devices, ev.Device) {
			evs = append(evs, ev)
		}
	}
	return evs, last, true
}

// holderStreams returns the streams that carry device's events to its
// holder: the subscribed connections that claimed it, or, when the claim
// was made on a connection that does not stream (a program that claims on
// one connection and subscribes on another), the subscribed connections
// of the claiming process. Called with s.mu held.
func (s *Server) holderStreams(device string) []*conn {
	var out []*conn
	pids := map[int32]bool{}
	for c := range s.conns {
		if c.holdsFor(device) {
			if c.subbed.Load() {
				out = append(out, c)
			}
			pids[c.cred.Pid] = true
		}
	}
	if len(out) > 0 || len(pids) == 0 {
		return out
	}
	for c := range s.conns {
		if pids[c.cred.Pid] && c.subbed.Load() {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) ackChanged() {
	s.mu.Lock()
	close(s.acked)
	s.acked = make(chan struct{})
	s.mu.Unlock()
}

// waitForHolders waits (at most AckTimeout) until the holder of every
// device a pre-remove event was logged for has handled that event: a
// pre-remove must reach the holders before the removal goes on. Holders
// of other devices, and watchers, are not waited for (see holderStreams).
func (s *Server) waitForHolders(ctx context.Context, evs []rmapchain.Event) {
	if len(evs) == 0 {
		return
	}
	deadline := time.NewTimer(s.cfg.AckTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		var pending []string
		for _, ev := range evs {
			for _, c := range s.holderStreams(ev.Device) {
				if !c.handled(ev.Seq) {
					pending = append(pending, fmt.Sprintf("%s (event %d, pid %d)", ev.Device, ev.Seq, c.cred.Pid))
				}
			}
		}
		acked := s.acked
		s.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		select {
		case <-acked:
		case <-deadline.C:
			s.cfg.Logf("daxstack: pre-remove: no acknowledgement within %v from the holder of %s", s.cfg.AckTimeout, strings.Join(pending, ", "))
			return
		case <-ctx.Done():
			return
		}
	}
}
