package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
)

// FuzzCall sends arbitrary parameters to every command of the wire, in
// arbitrary order, on one engine, as a client of the daemon's socket
// could. No input may crash a command: a panic inside one comes back as
// ErrInternal (see Server.call and the engine's own recovery), which fails
// the fuzz target.
//
// The engine is confined to a temporary directory: it is the working
// directory, sysfs and /dev are empty trees there, and inputs that name a
// path with a slash are skipped, so that no table can reach a real device
// or file (a table that named one, followed by a write, would write it).
func FuzzCall(f *testing.F) {
	dir := f.TempDir()
	f.Chdir(dir)
	for _, name := range []string{"leaf0.img", "leaf1.img"} {
		if err := os.WriteFile(name, nil, 0o600); err != nil {
			f.Fatal(err)
		}
		if err := os.Truncate(name, 1<<20); err != nil {
			f.Fatal(err)
		}
	}
	for _, d := range []string{"sys", "dev"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	e, err := control.Open(control.Config{DB: filepath.Join(dir, "daxstack.db"), LockTimeout: time.Second,
		SysfsRoot: filepath.Join(dir, "sys"), DevRoot: filepath.Join(dir, "dev")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	names := methodNames()
	seeds := []struct{ method, params string }{
		{"create", `{"name":"s0","table":"0 2048 striped 2 8 leaf0.img 0 leaf1.img 0"}`},
		{"create", `{"name":"top","table":"0 1000 linear s0 24\n1000 16 error"}`},
		{"inject", `{"name":"leaf1.img","sector":300,"count":4}`},
		{"badblocks", `{"name":"top"}`},
		{"rmap", `{"name":"leaf1.img","sector":300,"count":4}`},
		{"error-range", `{"name":"top","sector":100,"count":8}`},
		{"remove", `{"name":"top"}`},
		{"create-concise", `{"spec":"a,,,rw,0 8 zero"}`},
		{"rename", `{"name":"a","new":"b"}`},
		{"events", `{"since":0}`},
		{"claim", `{"device":"s0","holder":"me","pid":1}`},
		{"remove_all", `{}`},
		{"load", `null`},
		{"info", `[]`},
	}
	for _, s := range seeds {
		if i := slices.Index(names, s.method); i >= 0 {
			f.Add(uint8(i), []byte(s.params))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, params []byte) {
		if bytes.ContainsRune(params, '/') || bytes.Contains(params, []byte(`\u002f`)) || bytes.Contains(params, []byte(`\u002F`)) {
			t.Skip("names a path outside the sandbox")
		}
		name := names[int(which)%len(names)]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv := &Server{eng: e}
		_, err := srv.call(ctx, methods[name], json.RawMessage(params))
		if errors.Is(err, control.ErrInternal) {
			t.Fatalf("%s %s: %v", name, params, err)
		}
	})
}
