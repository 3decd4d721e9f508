package control_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/internal/peer"
	"github.com/daxstack/daxstack/internal/testenv"
)

// TestPeerLeafRule runs commands on a daemon's engine for a real
// unprivileged user made for the test: each leaf must be one the user
// could open itself, read-write unless the device is read-only.
func TestPeerLeafRule(t *testing.T) {
	u := testenv.NewUser(t, "dxctl")
	f := newFixture(t, 0, 0)
	for _, d := range []string{f.dir, filepath.Dir(f.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name string, mode os.FileMode, owner uint32) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, make([]byte, 64<<10), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		if err := os.Chown(p, int(owner), -1); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := mk("secret.img", 0o600, 0)
	public := mk("public.img", 0o644, 0)
	own := mk("own.img", 0o600, u.UID)
	e := f.daemonEngine()
	as := control.WithPeer(bg, control.Peer{Cred: peer.Cred{UID: u.UID, GID: u.GID}, Dir: f.dir})
	asRoot := control.WithPeer(bg, control.Peer{Cred: peer.Cred{}, Dir: f.dir})

	for _, c := range []struct {
		name     string
		ctx      context.Context
		table    string
		readOnly bool
		want     error // nil: created
	}{
		{"root-only file", as, "0 8 linear secret.img 0", false, syscall.EACCES},
		{"root-only file, read-only device", as, "0 8 linear " + secret + " 0", true, syscall.EACCES},
		{"readable file, writable device", as, "0 8 linear public.img 0", false, control.ErrPeerReadOnly},
		{"readable file among own, writable device", as, "0 16 striped 2 8 own.img 0 public.img 0", false, control.ErrPeerReadOnly},
		{"readable file, read-only device", as, "0 8 linear public.img 0", true, nil},
		{"own file, relative to the peer", as, "0 8 linear own.img 0", false, nil},
		{"own file by its path", as, "0 8 linear " + own + " 8", false, nil},
		{"root as a peer", asRoot, "0 8 linear secret.img 0", false, nil},
		{"no peer: this process", bg, "0 8 linear " + secret + " 8", false, nil},
		{"a writable device over a read-only one", as, "0 8 linear c4 0", false, syscall.EACCES},
		{"a read-only device over a read-only one", as, "0 8 linear c4 0", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testenv.StateOf(t, f.db)
			name := "c" + strings.NewReplacer(" ", "", ",", "", ":", "").Replace(c.name)
			if c.table == "0 8 linear public.img 0" && c.readOnly {
				name = "c4"
			}
			table := c.table
			err := e.Create(c.ctx, control.CreateReq{Name: name, Table: &table, ReadOnly: c.readOnly})
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("create %s: %v", name, err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("create %s: %v, want %v", name, err, c.want)
			case c.want != nil:
				testenv.SameState(t, f.db, before, "a refused create")
				if _, err := e.Info(bg, control.NameReq{Name: name}); err == nil {
					t.Errorf("the refused device %s exists", name)
				}
			}
		})
	}

	// Handles: a leaf the peer may only read opens for reading only; a
	// root-only one not at all; mapped devices as their flags say.
	for _, c := range []struct {
		name  string
		write bool
		want  error
	}{
		{public, false, nil},
		{public, true, control.ErrPeerReadOnly},
		{secret, false, syscall.EACCES},
		{own, true, nil},
		{"c4", true, syscall.EROFS},
		{"c4", false, nil},
	} {
		h, err := e.Open(as, control.OpenReq{Name: c.name, Write: c.write})
		if h != nil {
			h.Close()
		}
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("open %s write=%v as uid %d: %v, want %v", c.name, c.write, u.UID, err, c.want)
		}
	}
	// Poison straight on a leaf is writing it.
	if _, err := e.Inject(as, control.RangeReq{Name: public, Sector: 1, Count: 1}); !errors.Is(err, control.ErrPeerReadOnly) {
		t.Errorf("inject on the read-only leaf: %v", err)
	}
	if _, err := e.Inject(as, control.RangeReq{Name: own, Sector: 1, Count: 1}); err != nil {
		t.Errorf("inject on the peer's own leaf: %v", err)
	}
	if _, err := e.Claim(as, control.ClaimReq{Device: secret, Holder: "x"}); !errors.Is(err, syscall.EACCES) {
		t.Errorf("claim of the root-only leaf: %v", err)
	}
}
