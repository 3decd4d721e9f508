package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// Client talks to the daemon. It implements control.Caller, so the CLI
// runs the same commands through it as on an embedded engine.
type Client struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Scanner
	id   uint64
}

// Dial connects to the daemon's socket.
func Dial(path string) (*Client, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	return &Client{path: path, conn: c, r: sc}, nil
}

// Close closes the connection (ending any claim made through it).
func (c *Client) Close() error { return c.conn.Close() }

// Call runs one command on the daemon.
func (c *Client) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id++
	b, err := json.Marshal(request{ID: c.id, Method: method, Params: params})
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
		defer c.conn.SetDeadline(time.Time{})
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("daemon %s: %w", c.path, err)
	}
	for c.r.Scan() {
		var resp response
		if err := json.Unmarshal(c.r.Bytes(), &resp); err != nil {
			return nil, fmt.Errorf("daemon %s: bad response: %w", c.path, err)
		}
		if resp.ID != c.id {
			continue
		}
		return resp.Result, resp.Error.Err()
	}
	err = c.r.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("daemon %s: %w", c.path, err)
}

// Subscription is an event stream from the daemon.
type Subscription struct {
	conn   net.Conn
	events chan rmapchain.Event
	wmu    sync.Mutex
	err    error
	done   chan struct{}
}

// Subscribe opens a connection of its own and streams the events logged
// after since that concern devices (all when empty).
func Subscribe(path string, since uint64, devices []string) (*Subscription, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	p, _ := json.Marshal(SubscribeReq{Since: since, Devices: devices})
	b, _ := json.Marshal(request{ID: 1, Method: "subscribe", Params: p})
	if _, err := c.Write(append(b, '\n')); err != nil {
		c.Close()
		return nil, err
	}
	s := &Subscription{conn: c, events: make(chan rmapchain.Event, 256), done: make(chan struct{})}
	go s.read()
	return s, nil
}

func (s *Subscription) read() {
	defer close(s.events)
	defer close(s.done)
	sc := bufio.NewScanner(s.conn)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			s.err = err
			return
		}
		if resp.Error != nil {
			s.err = resp.Error.Err()
			return
		}
		if resp.Event != nil {
			s.events <- *resp.Event
		}
	}
	s.err = sc.Err()
	if s.err == nil {
		s.err = io.EOF
	}
}

// Events returns the stream; it is closed when the connection ends (see
// Err).
func (s *Subscription) Events() <-chan rmapchain.Event { return s.events }

// Err returns why the stream ended, once Events is closed.
func (s *Subscription) Err() error {
	<-s.done
	return s.err
}

// Ack tells the daemon every event up to seq has been handled.
func (s *Subscription) Ack(seq uint64) error {
	b, _ := json.Marshal(request{Ack: &seq})
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(append(b, '\n'))
	return err
}

// Close ends the stream.
func (s *Subscription) Close() error { return s.conn.Close() }

// ErrStreamEnded: the daemon went away and did not come back in time.
var ErrStreamEnded = errors.New("event stream ended")

var _ control.Caller = (*Client)(nil)
