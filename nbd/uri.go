package nbd

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URI is an NBD URI in qemu's syntax (which libnbd and nbdkit share):
//
//	nbd://HOST[:PORT]/EXPORT          TCP (nbd+tcp:// too), port 10809 by default
//	nbd+unix:///EXPORT?socket=PATH    a unix socket
//	nbds://..., nbds+unix://...       the same with TLS (NBD_OPT_STARTTLS)
//
// The export is the path after its first slash, percent-decoded; an empty
// one names the server's default export.
type URI struct {
	TLS     bool
	Network string // "tcp" or "unix"
	Address string // HOST:PORT for tcp, the socket's path for unix
	Export  string
}

// ParseURI parses an NBD URI. Anything it does not know (user info, a
// fragment, query parameters other than a unix socket's one socket=) is
// an error rather than silently ignored.
func ParseURI(s string) (*URI, error) {
	bad := func(why string) (*URI, error) {
		return nil, fmt.Errorf("nbd: bad URI %q: %s", s, why)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return bad("no scheme")
	}
	u := &URI{}
	switch strings.ToLower(scheme) {
	case "nbd", "nbd+tcp":
		u.Network = "tcp"
	case "nbds", "nbds+tcp":
		u.Network, u.TLS = "tcp", true
	case "nbd+unix":
		u.Network = "unix"
	case "nbds+unix":
		u.Network, u.TLS = "unix", true
	default:
		return bad("scheme is not nbd, nbds, nbd+unix or nbds+unix")
	}
	pu, err := url.Parse("x://" + rest)
	if err != nil {
		return bad(err.Error())
	}
	if pu.User != nil {
		return bad("user information is not supported")
	}
	if pu.Fragment != "" || strings.Contains(rest, "#") {
		return bad("a fragment is not supported")
	}
	u.Export = strings.TrimPrefix(pu.Path, "/")
	if !validString(u.Export) {
		return bad("the export name is not a valid NBD string")
	}
	q, err := url.ParseQuery(pu.RawQuery)
	if err != nil {
		return bad(err.Error())
	}
	if u.Network == "unix" {
		if pu.Host != "" {
			return bad("a unix socket URI has no host (nbd+unix:///EXPORT?socket=PATH)")
		}
		socks := q["socket"]
		if len(q) != 1 || len(socks) != 1 || socks[0] == "" {
			return bad("a unix socket URI needs exactly one socket=PATH")
		}
		if strings.IndexByte(socks[0], 0) >= 0 {
			return bad("socket path contains NUL")
		}
		u.Address = socks[0]
		return u, nil
	}
	if len(q) != 0 || pu.ForceQuery {
		return bad("a TCP URI takes no query")
	}
	host, port := pu.Hostname(), pu.Port()
	if host == "" {
		return bad("no host")
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(pu.Host, "[") {
		return bad("an IPv6 address must be in brackets")
	}
	if strings.HasSuffix(pu.Host, ":") {
		return bad("empty port")
	}
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port is not a number from 1 to 65535")
	}
	u.Address = net.JoinHostPort(host, port)
	return u, nil
}

// String returns the URI in canonical form (ParseURI of it gives u back).
func (u *URI) String() string {
	scheme := "nbd"
	if u.TLS {
		scheme = "nbds"
	}
	path := (&url.URL{Path: "/" + u.Export}).EscapedPath()
	if u.Network == "unix" {
		// Slashes need no escaping in a query; paths read better without.
		return scheme + "+unix://" + path + "?socket=" + strings.ReplaceAll(url.QueryEscape(u.Address), "%2F", "/")
	}
	return scheme + "://" + u.Address + path
}
