package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/rmapchain"
)

// pollInterval is how often watch and hold read the event log when no
// daemon streams events to them.
const pollInterval = 100 * time.Millisecond

// eventSource yields events after a sequence number until ctx ends.
type eventSource interface {
	// next returns the events after since (waiting for at least one unless
	// follow is false) and the sequence number to resume from.
	next(ctx context.Context, since uint64, devices []string, follow bool) ([]rmapchain.Event, uint64, error)
}

// pollSource reads the event log through the `events` method.
type pollSource struct{ x *env }

// nextWith reads once through a.
func (p pollSource) nextWith(ctx context.Context, a control.API, since uint64, devices []string) ([]rmapchain.Event, uint64, error) {
	resp, err := a.Events(ctx, control.EventsReq{Since: since, Devices: devices})
	if err != nil {
		return nil, since, err
	}
	return resp.Events, max(since, resp.Last), nil
}

func (p pollSource) next(ctx context.Context, since uint64, devices []string, follow bool) ([]rmapchain.Event, uint64, error) {
	for {
		resp, err := p.x.api.Events(ctx, control.EventsReq{Since: since, Devices: devices})
		if err != nil {
			return nil, since, err
		}
		next := since
		if resp.Last > next {
			next = resp.Last
		}
		if len(resp.Events) > 0 || !follow {
			return resp.Events, next, nil
		}
		since = next
		select {
		case <-ctx.Done():
			return nil, since, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

func sourceFor(x *env) eventSource {
	if s, ok := x.api.(interface{ events() eventSource }); ok {
		return s.events()
	}
	return pollSource{x}
}

func eventFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Uint64Flag{Name: "since", Usage: "resume after event `SEQ` (0: from the start of the log)"},
		&cli.BoolFlag{Name: "no-follow", Usage: "print the events logged so far and exit"},
	}
}

// streamEvents prints (or hands to fn) events for devices until ctx ends.
func streamEvents(x *env, devices []string, fn func(rmapchain.Event) error) error {
	return streamFrom(x, sourceFor(x), devices, fn)
}

// streamFrom is streamEvents from a given source.
func streamFrom(x *env, src eventSource, devices []string, fn func(rmapchain.Event) error) error {
	since := x.c.Uint64("since")
	follow := !x.c.Bool("no-follow")
	for {
		evs, next, err := src.next(x.ctx(), since, devices, follow)
		if err != nil {
			if x.ctx().Err() != nil {
				return nil // interrupted: a normal end of watching
			}
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		since = next
		if !follow {
			return nil
		}
	}
}

func printEvent(x *env) func(rmapchain.Event) error {
	return func(ev rmapchain.Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(x.out, string(b))
		return err
	}
}

func eventCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "watch", Usage: "print failure events (one JSON object per line) without claiming devices",
			ArgsUsage: "[<device>...]", Flags: eventFlags(),
			Action: func(c *cli.Context) error {
				x := newEnv(c)
				return streamEvents(x, names(c), printEvent(x))
			},
		},
		{
			Name: "hold", Usage: "claim a device exclusively and receive its events",
			ArgsUsage: "<device> [--exec CMD]",
			Flags: append(eventFlags(),
				&cli.StringFlag{Name: "exec", Usage: "run `CMD` (with sh -c) once per event, the event's JSON on its stdin"},
				&cli.StringFlag{Name: "name", Usage: "holder `NAME` shown to others (default hold:<pid>)"},
			),
			Action: holdAction,
		},
		{
			Name: "release", Usage: "end a claim (a claim also ends when its holding process exits)",
			ArgsUsage: "<device> [--name NAME]",
			Flags:     []cli.Flag{&cli.StringFlag{Name: "name", Usage: "holder `NAME` (default: whoever holds it)"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("Please specify one device.")
				}
				x := newEnv(c)
				return x.api.Release(x.ctx(), control.ClaimReq{Device: c.Args().First(), Holder: c.String("name")})
			},
		},
	}
}

func holdAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("Please specify one device.")
	}
	x := newEnv(c)
	dev := c.Args().First()
	name := c.String("name")
	if name == "" {
		name = fmt.Sprintf("hold:%d", os.Getpid())
	}
	// Through the daemon the claim is made on the event stream itself, so
	// that it lasts exactly as long as the stream (a pre-remove waits for
	// this stream's acknowledgement) and is made again when the stream
	// reconnects to a restarted daemon.
	var src eventSource
	var claimed control.ClaimResp
	var err error
	if d, ok := x.api.(*daemonCaller); ok && !c.Bool("no-follow") {
		s, name, err := d.hold(dev, name, c.Uint64("since"))
		if err != nil {
			return err
		}
		defer s.close()
		src, claimed.Device = s, name
	} else if claimed, err = x.api.Claim(x.ctx(), control.ClaimReq{Device: dev, Holder: name, PID: os.Getpid()}); err != nil {
		return err
	} else {
		src = sourceFor(x)
	}
	defer func() {
		// Release on the way out, even after an interrupt.
		x.api.Release(context.Background(), control.ClaimReq{Device: dev, Holder: name})
	}()
	handle := printEvent(x)
	if cmd := c.String("exec"); cmd != "" {
		handle = func(ev rmapchain.Event) error {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			run := exec.CommandContext(x.ctx(), "/bin/sh", "-c", cmd)
			run.Stdin = bytes.NewReader(append(b, '\n'))
			run.Stdout, run.Stderr = x.out, x.errw
			run.Env = append(os.Environ(), "DAXSTACK_DEVICE="+ev.Device, "DAXSTACK_EVENT="+string(ev.Kind), fmt.Sprintf("DAXSTACK_SEQ=%d", ev.Seq))
			if err := run.Run(); err != nil && x.ctx().Err() == nil {
				fmt.Fprintf(x.errw, "daxstack: hold %s: %s: %v\n", dev, cmd, err)
			}
			return nil
		}
	}
	return streamFrom(x, src, []string{claimed.Device}, handle)
}
