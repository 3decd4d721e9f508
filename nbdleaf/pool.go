package nbdleaf

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/daxstack/daxstack/nbd"
)

// The connections of a leaf. A session runs one goroutine per connection
// slot: it dials (with backoff), checks the export's identity, publishes
// the connection for I/O and, when the connection dies, dials again. The
// first slot starts the others once the server says it allows several
// connections (NBD_FLAG_CAN_MULTI_CONN). When the last connection goes a
// grace timer starts; if no connection is back when it fires, the leaf is
// lost. A connection to the same export makes a lost leaf good again; a
// connection to another export (IdentityError) is closed at once and, if
// the leaf has no other, makes it lost at once, with that reason.

const (
	backoffMin = 20 * time.Millisecond
	backoffMax = time.Second
)

// startLocked starts a session if none runs (and the leaf is neither
// closed nor held lost), with first as its first connection if not nil.
// Callers hold mu.
func (l *Leaf) startLocked(first *conn) {
	if l.sess != nil || l.closed.Load() || l.held {
		if first != nil {
			l.closeAsync(first, closePatience)
		}
		return
	}
	ctx, cancel := context.WithCancel(l.ctx)
	s := &session{ctx: ctx, cancel: cancel}
	l.sess = s
	if first != nil {
		l.publishLocked(s, first)
	} else {
		l.downLocked(s, time.Now())
	}
	l.routines.Add(2)
	go l.slot(s, first, false)
	go l.watchdog(s)
}

// watchdog drops the connections of s that leave requests unanswered for
// longer than IOTimeout: their requests fail and go again on another
// connection, and the slot dials again. It watches progress per
// connection, as a request may wait behind others on a busy one.
func (l *Leaf) watchdog(s *session) {
	defer l.routines.Done()
	t := time.NewTicker(max(l.s.ioTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if p := l.live.Load(); p != nil {
			for _, cn := range *p {
				if cn.stuck(l.s.ioTimeout) {
					l.evict(cn, fmt.Errorf("%w: a request was unanswered for %v", nbd.ErrClosed, l.s.ioTimeout))
				}
			}
		}
	}
}

// endSessionLocked stops the session and closes its connections. Callers
// hold mu.
func (l *Leaf) endSessionLocked() {
	if l.sess == nil {
		return
	}
	l.sess.cancel()
	l.sess = nil
	if l.grace != nil {
		l.grace.Stop()
		l.grace = nil
	}
	if p := l.live.Swap(nil); p != nil {
		for _, cn := range *p {
			if cn.dirty.Load() {
				l.unflush.Store(true)
			}
			l.closeAsync(cn, closePatience)
		}
	}
}

// closePatience is how long a connection being closed may take to finish
// its requests in flight and say goodbye (NBD_CMD_DISC) before its socket
// is closed under it.
const closePatience = time.Second

// closeAsync closes a connection without waiting for it; Leaf.Close
// waits. After patience its socket is closed, which ends it at once.
func (l *Leaf) closeAsync(cn *conn, patience time.Duration) {
	l.routines.Add(1)
	go func() {
		defer l.routines.Done()
		t := time.AfterFunc(patience, func() { cn.raw.Close() })
		cn.c.Close()
		t.Stop()
	}()
}

// wakeLocked tells the I/O waiting for a connection to look again.
func (l *Leaf) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// markLostLocked makes the leaf lost with reason; false if it already
// was (the reason is updated all the same).
func (l *Leaf) markLostLocked(reason error) bool {
	l.reason = reason
	if l.lost.Swap(true) {
		return false
	}
	l.lostSince = time.Now()
	return true
}

// downLocked notes that s has no connection since t and arms the grace
// timer.
func (l *Leaf) downLocked(s *session, t time.Time) {
	l.downSince = t
	if l.grace != nil {
		l.grace.Stop()
	}
	l.grace = time.AfterFunc(l.s.grace, func() { l.graceOver(s, t) })
}

// graceOver makes the leaf lost if s has been without a connection since
// t for the whole grace period.
func (l *Leaf) graceOver(s *session, t time.Time) {
	l.mu.Lock()
	if l.sess != s || l.Connected() > 0 || !l.downSince.Equal(t) || l.lost.Load() {
		l.mu.Unlock()
		return
	}
	why := fmt.Errorf("%w for %v", ErrDisconnected, l.s.grace)
	if l.lastErr != nil {
		why = fmt.Errorf("%w for %v: %w", ErrDisconnected, l.s.grace, l.lastErr)
	}
	l.markLostLocked(why)
	l.wakeLocked()
	l.mu.Unlock()
	l.s.log.Warn("nbdleaf: leaf lost", "leaf", l.name, "reason", why)
	if l.s.onLost != nil {
		l.s.onLost(l, true, why)
	}
}

// publishLocked puts cn in use for s. A lost leaf is back (the caller
// reports it: publishLocked returns true).
func (l *Leaf) publishLocked(s *session, cn *conn) bool {
	info := cn.info
	var cur []*conn
	if p := l.live.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), cn)
	l.live.Store(&next)
	if l.grace != nil {
		l.grace.Stop()
		l.grace = nil
	}
	l.downSince = time.Time{}
	l.lastErr = nil
	l.remote.Store(cn.bad)
	for info.Flags&nbd.FlagCanMultiConn != 0 && s.extras < l.s.conns-1 {
		s.extras++
		l.routines.Add(1)
		go l.slot(s, nil, true)
	}
	if !s.poll && cn.bad && l.s.poll > 0 {
		s.poll = true
		l.routines.Add(1)
		go l.poller(s)
	}
	restored := false
	if l.lost.Load() && !l.held {
		l.lost.Store(false)
		l.reason = nil
		restored = true
	}
	l.wakeLocked()
	return restored
}

// slot keeps one connection of s up until s ends; c is its first
// connection, if one was made already. An extra slot (one beyond the
// first) ends when the server no longer allows several connections.
func (l *Leaf) slot(s *session, c *conn, extra bool) {
	defer l.routines.Done()
	backoff := backoffMin
	for {
		if c == nil {
			var err error
			c, err = l.dial(s.ctx)
			if s.ctx.Err() != nil {
				if c != nil {
					c.c.Close()
				}
				return
			}
			if err != nil {
				l.dialFailed(s, err)
				if !sleep(s.ctx, jitter(backoff)) {
					return
				}
				backoff = min(2*backoff, backoffMax)
				continue
			}
			l.mu.Lock()
			if l.sess != s || (extra && c.info.Flags&nbd.FlagCanMultiConn == 0) {
				if extra {
					s.extras-- // the first slot may start it again
				}
				l.mu.Unlock()
				c.c.Close()
				return
			}
			restored := l.publishLocked(s, c)
			l.mu.Unlock()
			if restored {
				l.s.log.Info("nbdleaf: leaf restored", "leaf", l.name)
				if l.s.onLost != nil {
					l.s.onLost(l, false, nil)
				}
			}
		}
		backoff = backoffMin
		select {
		case <-c.c.Done():
		case <-s.ctx.Done():
			return // endSessionLocked closes it
		}
		l.retire(s, c, c.c.Err())
		c = nil
	}
}

// dialFailed notes a failed dial of s: another export makes a leaf
// without connections lost at once.
func (l *Leaf) dialFailed(s *session, err error) {
	l.mu.Lock()
	if l.sess != s {
		l.mu.Unlock()
		return
	}
	l.lastErr = err
	var ie *IdentityError
	if !errors.As(err, &ie) || l.Connected() > 0 {
		l.mu.Unlock()
		l.s.log.Debug("nbdleaf: dial failed", "leaf", l.name, "err", err)
		return
	}
	changed := l.reason == nil || !errors.Is(l.reason, ErrChanged)
	fresh := l.markLostLocked(err)
	l.wakeLocked()
	l.mu.Unlock()
	if changed {
		l.s.log.Warn("nbdleaf: another export answers; leaf kept lost", "leaf", l.name, "reason", err)
	}
	if fresh && l.s.onLost != nil {
		l.s.onLost(l, true, err)
	}
}

// retire takes c out of use (it died, or a request on it timed out).
func (l *Leaf) retire(s *session, c *conn, why error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.live.Load()
	if l.sess != s || p == nil {
		return
	}
	i := slices.IndexFunc(*p, func(cn *conn) bool { return cn == c })
	if i < 0 {
		return
	}
	if (*p)[i].dirty.Load() {
		l.unflush.Store(true)
	}
	next := slices.Delete(slices.Clone(*p), i, i+1)
	l.live.Store(&next)
	if why != nil {
		l.lastErr = why
	}
	l.s.log.Info("nbdleaf: connection lost", "leaf", l.name, "err", why, "left", len(next))
	if len(next) == 0 && !l.lost.Load() {
		l.downLocked(s, time.Now())
	}
	l.wakeLocked()
}

// pick returns a connection for a request, waiting (up to the grace
// period, through the session) while there is none. A lost or closed
// leaf fails at once.
func (l *Leaf) pick() (*conn, error) {
	if p := l.live.Load(); p != nil && len(*p) > 0 && !l.lost.Load() {
		cs := *p
		return cs[int(l.rr.Add(1)%uint32(len(cs)))], nil
	}
	for {
		l.mu.Lock()
		switch {
		case l.closed.Load():
			l.mu.Unlock()
			return nil, leafError(l.name, ErrClosed)
		case l.lost.Load():
			l.mu.Unlock()
			return nil, l.lostError()
		}
		if p := l.live.Load(); p != nil && len(*p) > 0 {
			cs := *p
			l.mu.Unlock()
			return cs[int(l.rr.Add(1)%uint32(len(cs)))], nil
		}
		l.startLocked(nil)
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-l.ctx.Done():
		}
	}
}

// dial makes one connection and checks that it reaches the leaf's export.
func (l *Leaf) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.dial)
	defer cancel()
	var raw net.Conn
	var err error
	if l.as != nil && l.network == "unix" {
		raw, err = DialAs(ctx, *l.as, l.address)
	} else {
		var d net.Dialer
		raw, err = d.DialContext(ctx, l.network, l.address)
	}
	if err != nil {
		return nil, err
	}
	opt := nbd.Options{Export: l.export, MetaContexts: []string{BadContext}}
	if l.tls {
		if l.s.tls == nil {
			raw.Close()
			return nil, ErrTLS
		}
		opt.TLSConfig = l.s.tls
		if opt.TLSConfig.ServerName == "" && !opt.TLSConfig.InsecureSkipVerify {
			opt.TLSConfig = l.s.tls.Clone()
			opt.TLSConfig.ServerName = "localhost"
			if h, _, err := net.SplitHostPort(l.address); err == nil && l.network == "tcp" {
				opt.TLSConfig.ServerName = h
			}
		}
	}
	c, err := nbd.NewClient(ctx, raw, l.tls, opt)
	if err != nil {
		return nil, err
	}
	info := c.Info()
	got := Identity{Kind: Kind, URI: l.ref, Size: info.Size, Description: info.Description}
	if l.ident.Size >= 0 && !l.ident.Same(got) {
		c.Close()
		return nil, &IdentityError{Want: l.ident, Got: got}
	}
	return &conn{c: c, raw: raw, info: info, bad: slices.Contains(info.MetaContexts, BadContext)}, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter spreads reconnections of many leaves to one server.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }
