package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/export/blockdev"
	"github.com/daxstack/daxstack/export/serve"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/service"
)

func daemonCommands() []*cli.Command {
	serve := &cli.Command{
		Name:  "serve",
		Usage: "run the daemon: own the database, watch leaves, stream events to holders, export the devices",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "group", Usage: "`GROUP` (name or gid) that may change state besides root", EnvVars: []string{"DAXSTACK_GROUP"}},
			&cli.DurationFlag{Name: "rescan", Usage: "period of the safety-net rescan of every leaf", Value: 30 * time.Second},
			&cli.BoolFlag{Name: "no-uevents", Usage: "do not listen to kernel uevents (rely on rescans)"},
			&cli.DurationFlag{Name: "ack-timeout", Usage: "how long an orderly removal waits for holders", Value: 10 * time.Second},
			&cli.DurationFlag{Name: "nbd-poll", Usage: "how often NBD leaves on daxstack servers have their bad ranges read", Value: nbdleaf.DefaultPoll},
			&cli.DurationFlag{Name: "nbd-grace", Usage: "how long an NBD leaf may be without a connection before it is lost", Value: nbdleaf.DefaultGrace},
			&cli.IntFlag{Name: "uevent-rcvbuf", Usage: "uevent socket receive buffer in `BYTES` (tests: a tiny one provokes overruns)", Hidden: true},
			&cli.BoolFlag{Name: "no-hold", Usage: "check block-device leaves but do not hold them with O_EXCL (tests of surprise removal)", Hidden: true},
		}, exportFlags()...),
		Action: func(c *cli.Context) error {
			logger := log.New(c.App.ErrWriter, "", log.LstdFlags)
			exports, err := exportOptions(c)
			if err != nil {
				return err
			}
			nbdCfg, err := nbdConfig(c)
			if err != nil {
				return err
			}
			s, err := service.New(service.Config{
				Engine: control.Config{
					DB: c.String("db"), LockTimeout: c.Duration("lock-timeout"),
					SysfsRoot: c.String("sysfs"), DevRoot: c.String("devdir"),
					NoHold: c.Bool("no-hold"),
					NBD:    nbdCfg,
				},
				Socket:     c.String("socket"),
				Group:      c.String("group"),
				Rescan:     c.Duration("rescan"),
				Uevents:    !c.Bool("no-uevents"),
				AckTimeout: c.Duration("ack-timeout"),
				Logf:       logger.Printf,

				UeventRcvBuf: c.Int("uevent-rcvbuf"),
				Exports:      exports,
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
			for _, l := range r.Shrunk {
				fmt.Fprintf(c.App.Writer, "shrunk %s\n", l)
			}
			for _, l := range r.Grown {
				fmt.Fprintf(c.App.Writer, "grown %s\n", l)
			}
			return nil
		},
	}
	return append(eventCommands(), serve, offline, rescan)
}

// exportFlags are serve's flags for the exports (export/serve).
func exportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mount", Usage: "`DIR` of the device files (FUSE)", Value: serve.DefaultMount},
		&cli.BoolFlag{Name: "no-mount", Usage: "no device files (and so no block devices)"},
		&cli.StringFlag{Name: "links", Usage: "`DIR` of the links NAME -> block device", Value: blockdev.DefaultLinkDir},
		&cli.StringFlag{Name: "mapper-links", Usage: "also link /dev/mapper/NAME: auto (when the kernel has no device-mapper), on, off", Value: "auto"},
		&cli.BoolFlag{Name: "no-block", Usage: "no block devices (loop devices over the device files)"},
		&cli.StringFlag{Name: "nbd-socket", Usage: "`PATH` of the NBD unix socket", Value: serve.DefaultNBDSocket},
		&cli.BoolFlag{Name: "no-nbd", Usage: "no NBD server"},
		&cli.StringFlag{Name: "nbd-listen", Usage: "also serve NBD on TCP `ADDR` (needs --nbd-tls-* or --nbd-insecure)"},
		&cli.StringFlag{Name: "nbd-tls-cert", Usage: "certificate `FILE` (PEM): the server's for NBD over TCP, and the client's for nbds:// leaves"},
		&cli.StringFlag{Name: "nbd-tls-key", Usage: "key `FILE` (PEM) of --nbd-tls-cert"},
		&cli.StringFlag{Name: "nbd-tls-ca", Usage: "CA `FILE` (PEM) that signed the clients of NBD over TCP and the servers of nbds:// leaves"},
		&cli.BoolFlag{Name: "nbd-insecure", Usage: "NBD over TCP without TLS: trusts the network with every device"},
		&cli.BoolFlag{Name: "no-exports", Usage: "export nothing (no device files, block devices or NBD)", EnvVars: []string{"DAXSTACK_NO_EXPORTS"}},
	}
}

// exportOptions reads the export flags; nil with --no-exports, and for a
// daemon not run as root that was given none of them (loop devices and a
// FUSE mount for others need root).
func exportOptions(c *cli.Context) (*serve.Options, error) {
	if c.Bool("no-exports") {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		set := false
		for _, f := range exportFlags() {
			set = set || c.IsSet(f.Names()[0])
		}
		if !set {
			return nil, nil
		}
	}
	mm, err := blockdev.ParseMapperMode(c.String("mapper-links"))
	if err != nil {
		return nil, usagef("--mapper-links: %v", err)
	}
	o := &serve.Options{
		Mount: c.String("mount"), NoMount: c.Bool("no-mount"),
		Links: c.String("links"), MapperLinks: mm, NoBlock: c.Bool("no-block"),
		NBDSocket: c.String("nbd-socket"), NoNBD: c.Bool("no-nbd"),
		NBDListen: c.String("nbd-listen"),
		TLSCert:   c.String("nbd-tls-cert"), TLSKey: c.String("nbd-tls-key"), TLSCA: c.String("nbd-tls-ca"),
		Insecure: c.Bool("nbd-insecure"),
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	return o, nil
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
