package control

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/peer"
	"github.com/daxstack/daxstack/internal/testenv"
)

// TestPeerSwapBetweenOpens replaces the peer's file with root's between
// the peer's open and the engine's: the leaf the engine opened is refused
// (dax.ErrChanged), whichever way the path was swapped.
func TestPeerSwapBetweenOpens(t *testing.T) {
	u := testenv.NewUser(t, "dxswap")
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e, err := Open(Config{DB: filepath.Join(dir, "d.db"), SysfsRoot: filepath.Join(dir, "nosys")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, swap := range []struct {
		name string
		do   func(path, secret string) error
	}{
		{"rename over it", func(path, secret string) error { return os.Rename(secret, path) }},
		{"a symbolic link", func(path, secret string) error {
			if err := os.Remove(path); err != nil {
				return err
			}
			return os.Symlink(secret, path)
		}},
	} {
		t.Run(swap.name, func(t *testing.T) {
			path := filepath.Join(dir, "mine.img")
			secret := filepath.Join(dir, "secret.img")
			for p, owner := range map[string]uint32{path: u.UID, secret: 0} {
				os.Remove(p)
				if err := os.WriteFile(p, make([]byte, 8192), 0o600); err != nil {
					t.Fatal(err)
				}
				os.Chown(p, int(owner), -1)
			}
			e.actor = &actor{Peer: Peer{Cred: peer.Cred{UID: u.UID, GID: u.GID}}, readOnly: map[string]string{}}
			defer func() { e.actor = nil }()
			ref, bind, err := e.peerRef(path)
			if err != nil {
				t.Fatalf("the peer's own file: %v", err)
			}
			if err := swap.do(path, secret); err != nil {
				t.Fatal(err)
			}
			l, err := e.opener.Open(ref)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := bind(l); !errors.Is(err, dax.ErrChanged) {
				t.Fatalf("bind after the swap: %v, want ErrChanged", err)
			}
			// Unswapped, the same steps bind.
			os.Remove(path)
			os.WriteFile(path, make([]byte, 8192), 0o600)
			os.Chown(path, int(u.UID), -1)
			ref, bind, err = e.peerRef(path)
			if err != nil {
				t.Fatal(err)
			}
			l2, err := e.opener.Open(ref)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if err := bind(l2); err != nil {
				t.Errorf("bind with nothing swapped: %v", err)
			}
		})
	}
}
