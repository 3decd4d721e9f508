package serve

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/daxstack/daxstack/nbd"
)

// mayUse is the access rule of the NBD unix socket, the daemon socket's:
// root, or a member (primary or supplementary) of the daemon's group. A
// TCP peer has no credentials: it got here through verified TLS or an
// explicit --nbd-insecure.
func (x *Exports) mayUse(p *nbd.Peer) bool {
	if p == nil {
		return false
	}
	if p.Cred == nil {
		return x.tcpPeer(p)
	}
	if p.Cred.Uid == 0 {
		return true
	}
	g := x.o.Group
	if g < 0 {
		return false
	}
	if int(p.Cred.Gid) == g {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cred.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if gs, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(gs) {
				if n, err := strconv.Atoi(f); err == nil && n == g {
					return true
				}
			}
		}
	}
	return false
}

// tcpPeer: a peer without unix credentials is one of the TCP listener's
// (the unix listener always has them); with TLS required, only once its
// certificate is verified.
func (x *Exports) tcpPeer(p *nbd.Peer) bool {
	if x.tcp == nil {
		return false
	}
	if x.o.Insecure {
		return true
	}
	return p.TLS != nil && len(p.TLS.VerifiedChains) > 0
}
