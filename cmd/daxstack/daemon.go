package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/service"
)

func daemonCommands() []*cli.Command {
	serve := &cli.Command{
		Name:  "serve",
		Usage: "run the daemon: own the database, watch leaves, stream events to holders",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Usage: "`GROUP` (name or gid) that may change state besides root", EnvVars: []string{"DAXSTACK_GROUP"}},
			&cli.DurationFlag{Name: "rescan", Usage: "period of the safety-net rescan of every leaf", Value: 30 * time.Second},
			&cli.BoolFlag{Name: "no-uevents", Usage: "do not listen to kernel uevents (rely on rescans)"},
			&cli.DurationFlag{Name: "ack-timeout", Usage: "how long an orderly removal waits for holders", Value: 10 * time.Second},
			&cli.DurationFlag{Name: "nbd-poll", Usage: "how often NBD leaves on daxstack servers have their bad ranges read", Value: nbdleaf.DefaultPoll},
			&cli.DurationFlag{Name: "nbd-grace", Usage: "how long an NBD leaf may be without a connection before it is lost", Value: nbdleaf.DefaultGrace},
			&cli.StringFlag{Name: "nbd-tls-cert", Usage: "client certificate `FILE` for nbds:// leaves (PEM; with --nbd-tls-key)"},
			&cli.StringFlag{Name: "nbd-tls-key", Usage: "client key `FILE` for nbds:// leaves (PEM)"},
			&cli.StringFlag{Name: "nbd-tls-ca", Usage: "CA `FILE` that signed the servers of nbds:// leaves (PEM; default: the system's)"},
			&cli.IntFlag{Name: "uevent-rcvbuf", Usage: "uevent socket receive buffer in `BYTES` (tests: a tiny one provokes overruns)", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			logger := log.New(c.App.ErrWriter, "", log.LstdFlags)
			nbdCfg, err := nbdConfig(c)
			if err != nil {
				return err
			}
			s, err := service.New(service.Config{
				Engine: control.Config{
					DB: c.String("db"), LockTimeout: c.Duration("lock-timeout"),
					SysfsRoot: c.String("sysfs"), DevRoot: c.String("devdir"),
					NBD: nbdCfg,
				},
				Socket:     c.String("socket"),
				Group:      c.String("group"),
				Rescan:     c.Duration("rescan"),
				Uevents:    !c.Bool("no-uevents"),
				AckTimeout: c.Duration("ack-timeout"),
				Logf:       logger.Printf,

				UeventRcvBuf: c.Int("uevent-rcvbuf"),
			})
			if err != nil {
				return err
			}
			return s.Serve(c.Context)
		},
	}
	offline := &cli.Command{
		Name:      "offline",
		Usage:     "remove a leaf in order: tell the holders above it (pre-remove), then mark it lost",
		ArgsUsage: "<leaf>",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("Please specify one leaf.")
			}
			x := newEnv(c)
			if _, err := x.api.PreRemove(x.ctx(), control.NameReq{Name: c.Args().First()}); err != nil {
				return err
			}
			_, err := x.api.Offline(x.ctx(), control.NameReq{Name: c.Args().First()})
			return err
		},
	}
	rescan := &cli.Command{
		Name:  "rescan",
		Usage: "compare every recorded leaf with the system now and record what changed",
		Action: func(c *cli.Context) error {
			x := newEnv(c)
			r, err := x.api.Rescan(x.ctx())
			if err != nil {
				return err
			}
			for _, l := range r.Lost {
				fmt.Fprintf(c.App.Writer, "lost %s\n", l)
			}
			for _, l := range r.Restored {
				fmt.Fprintf(c.App.Writer, "restored %s\n", l)
			}
			for _, l := range r.Changed {
				fmt.Fprintf(c.App.Writer, "badblocks changed %s\n", l)
			}
			return nil
		},
	}
	return append(eventCommands(), serve, offline, rescan)
}

// dialDaemon connects to the daemon's socket.
func dialDaemon(path string) (control.API, error) {
	cl, err := service.Dial(path)
	if err != nil {
		return nil, err
	}
	return &daemonCaller{Client: cl, path: path}, nil
}

// daemonCaller is the daemon's client, which can also stream events.
type daemonCaller struct {
	*service.Client
	path string
}

func (d *daemonCaller) events() eventSource { return &streamSource{path: d.path, d: d} }

// hold claims dev for holder on a stream of its own, so that the claim
// lasts exactly as long as the stream, and returns the stream and the
// device's name as events give it.
func (d *daemonCaller) hold(dev, holder string, since uint64) (*streamSource, string, error) {
	sub, err := service.Hold(d.path, since, []string{dev}, holder)
	if err != nil {
		return nil, "", err
	}
	name := dev
	if devs := sub.Devices(); len(devs) == 1 {
		name = devs[0]
	}
	return &streamSource{path: d.path, d: d, sub: sub, holder: holder}, name, nil
}

// streamSource reads events from a daemon subscription, acknowledging each
// batch when the next is asked for, and reconnecting (from the last
// handled sequence number) when the daemon restarts. A holder's stream
// claims its device again when it reconnects.
type streamSource struct {
	path    string
	d       *daemonCaller
	sub     *service.Subscription
	holder  string // claim the devices on each connection
	handled uint64
}

// close ends the stream (and a holder's claims with it).
func (s *streamSource) close() {
	if s.sub != nil {
		s.sub.Close()
	}
}

// reconnectFor bounds how long a subscriber waits for a restarting daemon.
const reconnectFor = 30 * time.Second

func (s *streamSource) next(ctx context.Context, since uint64, devices []string, follow bool) ([]rmapchain.Event, uint64, error) {
	if !follow {
		return pollSource{}.nextWith(ctx, s.d, since, devices)
	}
	if s.sub != nil && s.handled > 0 {
		s.sub.Ack(s.handled)
	}
	deadline := time.Now().Add(reconnectFor)
	for {
		if s.sub == nil {
			var sub *service.Subscription
			var err error
			if s.holder != "" {
				sub, err = service.Hold(s.path, since, devices, s.holder)
			} else {
				sub, err = service.Subscribe(s.path, since, devices)
			}
			if err != nil {
				if !errors.Is(err, service.ErrNoDaemon) || time.Now().After(deadline) {
					return nil, since, err
				}
				select {
				case <-ctx.Done():
					return nil, since, ctx.Err()
				case <-time.After(100 * time.Millisecond):
					continue
				}
			}
			s.sub = sub
		}
		select {
		case <-ctx.Done():
			s.sub.Close()
			return nil, since, ctx.Err()
		case ev, ok := <-s.sub.Events():
			if !ok {
				err := s.sub.Err()
				s.sub = nil
				if errors.Is(err, context.Canceled) {
					return nil, since, err
				}
				deadline = time.Now().Add(reconnectFor)
				continue // the daemon went away: reconnect and resume
			}
			evs := []rmapchain.Event{ev}
			for more := true; more; {
				select {
				case e2, ok := <-s.sub.Events():
					if !ok {
						more = false
						break
					}
					evs = append(evs, e2)
				default:
					more = false
				}
			}
			s.handled = evs[len(evs)-1].Seq
			return evs, s.handled, nil
		}
	}
}

// nbdConfig is what the daemon's NBD leaves share, from its --nbd-* flags.
func nbdConfig(c *cli.Context) (control.NBDConfig, error) {
	cfg := control.NBDConfig{Poll: c.Duration("nbd-poll"), Grace: c.Duration("nbd-grace")}
	cert, key, ca := c.String("nbd-tls-cert"), c.String("nbd-tls-key"), c.String("nbd-tls-ca")
	if cert != "" || key != "" || ca != "" {
		t, err := nbdleaf.ClientTLS(cert, key, ca)
		if err != nil {
			return cfg, usagef("--nbd-tls-*: %v", err)
		}
		cfg.TLS = t
	}
	return cfg, nil
}
