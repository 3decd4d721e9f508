package service

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// Subscription is an event stream from the daemon.
type Subscription struct {
	conn    net.Conn
	events  chan rmapchain.Event
	devices []string
	wmu     sync.Mutex
	err     error
	done    chan struct{}
}

// subscribeTimeout bounds the wait for the daemon's answer to a
// subscription.
const subscribeTimeout = 30 * time.Second

// Subscribe opens a connection of its own and streams the events logged
// after since that concern devices (all when empty).
func Subscribe(path string, since uint64, devices []string) (*Subscription, error) {
	return subscribe(path, SubscribeReq{Since: since, Devices: devices})
}

// Hold opens a connection of its own, claims devices on it for holder, and
// streams their events logged after since. The claims end when the
// subscription is closed (or the process ends); a holder that lost its
// daemon calls Hold again to claim them anew. A claim the daemon refuses
// (another holder, a table using the device, no right to change state) is
// Hold's error.
func Hold(path string, since uint64, devices []string, holder string) (*Subscription, error) {
	if holder == "" {
		return nil, fmt.Errorf("%w: hold: empty holder name", control.ErrUsage)
	}
	return subscribe(path, SubscribeReq{Since: since, Devices: devices, Holder: holder})
}

func subscribe(path string, req SubscribeReq) (*Subscription, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoDaemon, err)
	}
	p, _ := json.Marshal(req)
	b, _ := json.Marshal(request{ID: 1, Method: "subscribe", Params: p, Dir: workDir()})
	if _, err := c.Write(append(b, '\n')); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrNoDaemon, path, err)
	}
	rd := bufio.NewReaderSize(c, 64<<10)
	c.SetReadDeadline(time.Now().Add(subscribeTimeout))
	line, err := readLine(rd, maxLine)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrNoDaemon, path, err)
	}
	c.SetReadDeadline(time.Time{})
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		c.Close()
		return nil, fmt.Errorf("daemon %s: bad response: %w", path, err)
	}
	if resp.Error != nil {
		c.Close()
		return nil, resp.Error.Err()
	}
	var sr SubscribeResp
	if err := json.Unmarshal(resp.Result, &sr); err != nil {
		c.Close()
		return nil, fmt.Errorf("daemon %s: bad response: %w", path, err)
	}
	s := &Subscription{conn: c, events: make(chan rmapchain.Event, 256), devices: sr.Devices, done: make(chan struct{})}
	go s.read(rd)
	return s, nil
}

func (s *Subscription) read(rd *bufio.Reader) {
	defer close(s.events)
	defer close(s.done)
	for {
		line, err := readLine(rd, maxLine)
		if err != nil {
			s.err = err
			return
		}
		var resp response
		if err := json.Unmarshal(line, &resp); err != nil {
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
}

// Devices returns the devices the stream follows as events name them (for
// a holder, the devices it claimed), or nil for all.
func (s *Subscription) Devices() []string { return s.devices }

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
