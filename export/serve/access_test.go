package serve

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/nbd"
)

func TestMayUse(t *testing.T) {
	self := int32(os.Getpid())
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	defer tcp.Close()
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{&x509.Certificate{}}}}
	for _, tc := range []struct {
		name     string
		group    int
		tcp      bool
		insecure bool
		peer     *nbd.Peer
		want     bool
	}{
		{"nil peer", 5, false, false, nil, false},
		{"root", -1, false, false, &nbd.Peer{Cred: &syscall.Ucred{Pid: self, Uid: 0, Gid: 0}}, true},
		{"other, no group", -1, false, false, &nbd.Peer{Cred: &syscall.Ucred{Pid: self, Uid: 1000, Gid: 1000}}, false},
		{"other, primary group", 1000, false, false, &nbd.Peer{Cred: &syscall.Ucred{Pid: self, Uid: 1000, Gid: 1000}}, true},
		{"other, another group", 1001, false, false, &nbd.Peer{Cred: &syscall.Ucred{Pid: 1 << 30, Uid: 1000, Gid: 1000}}, false},
		{"no credentials, no tcp listener", -1, false, false, &nbd.Peer{}, false},
		{"tcp before tls", -1, true, false, &nbd.Peer{}, false},
		{"tcp, tls unverified", -1, true, false, &nbd.Peer{TLS: &tls.ConnectionState{}}, false},
		{"tcp, tls verified", -1, true, false, &nbd.Peer{TLS: verified}, true},
		{"tcp insecure", -1, true, true, &nbd.Peer{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := &Exports{o: Options{Group: tc.group, Insecure: tc.insecure}}
			if tc.tcp {
				x.tcp = tcp
			}
			if got := x.mayUse(tc.peer); got != tc.want {
				t.Errorf("mayUse = %v, want %v", got, tc.want)
			}
		})
	}
}
