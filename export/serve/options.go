package serve

import (
	"fmt"
	"path/filepath"

	"github.com/daxstack/daxstack/export/blockdev"
	"github.com/daxstack/daxstack/internal/errno"
	"syscall"
)

// Defaults of Options.
const (
	DefaultMount     = "/run/daxstack/dev"
	DefaultNBDSocket = "/run/daxstack/nbd.sock"
)

// ErrInvalid: options that do not go together.
var ErrInvalid = errno.New("invalid export options", syscall.EINVAL)

// Options say what Start exports, and where.
type Options struct {
	// Mount is the directory of the device files ("": DefaultMount).
	Mount string
	// NoMount turns device files off, and block devices with them.
	NoMount bool
	// Links is the directory of the links by name ("":
	// blockdev.DefaultLinkDir); MapperLinks says whether /dev/mapper gets
	// them too (auto: when the kernel has no device-mapper).
	Links       string
	MapperDir   string // "" : blockdev.DefaultMapperDir (tests change it)
	MapperLinks blockdev.MapperMode
	// NoBlock turns block devices off (device files stay).
	NoBlock bool

	// NBDSocket is the NBD unix socket ("": DefaultNBDSocket); NoNBD
	// turns the NBD server off.
	NBDSocket string
	NoNBD     bool
	// NBDListen is a TCP address for NBD ("": none). It requires TLS
	// (TLSCert, TLSKey and TLSCA: client certificates are verified
	// against TLSCA) unless Insecure, which trusts the network.
	NBDListen string
	TLSCert   string
	TLSKey    string
	TLSCA     string
	Insecure  bool

	// Group is the gid besides root that may use the exports (the
	// daemon's group); -1: root only.
	Group int
	// Logf logs what happens to exports.
	Logf func(format string, args ...any)
}

// Check reports options that do not go together (an error matching
// ErrInvalid), as Start would.
func (o Options) Check() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults fills the defaults in and checks the options.
func (o Options) withDefaults() (Options, error) {
	if o.Mount == "" {
		o.Mount = DefaultMount
	}
	if o.NoMount {
		o.NoBlock = true
	}
	if o.NBDSocket == "" {
		o.NBDSocket = DefaultNBDSocket
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	for _, p := range []string{o.Mount, o.NBDSocket} {
		if !filepath.IsAbs(p) {
			return o, fmt.Errorf("%w: %s is not an absolute path", ErrInvalid, p)
		}
	}
	if o.NBDListen != "" && !o.NoNBD {
		tls := o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != ""
		switch {
		case tls && o.Insecure:
			return o, fmt.Errorf("%w: --nbd-insecure and TLS options exclude each other", ErrInvalid)
		case !tls && !o.Insecure:
			return o, fmt.Errorf("%w: NBD over TCP (%s) needs TLS (--nbd-tls-cert, --nbd-tls-key, --nbd-tls-ca) or --nbd-insecure, which trusts the network", ErrInvalid, o.NBDListen)
		case tls && (o.TLSCert == "" || o.TLSKey == "" || o.TLSCA == ""):
			return o, fmt.Errorf("%w: NBD over TLS needs all of --nbd-tls-cert, --nbd-tls-key and --nbd-tls-ca", ErrInvalid)
		}
	}
	return o, nil
}

func (o Options) blockOptions() blockdev.Options {
	return blockdev.Options{LinkDir: o.Links, MapperDir: o.MapperDir, MapperLinks: o.MapperLinks}
}
