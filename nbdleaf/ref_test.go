package nbdleaf_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/daxstack/daxstack/nbdleaf"
)

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nbd://example.com/disk", "nbd://example.com:10809/disk"},
		{"nbd+tcp://example.com:1234/disk", "nbd://example.com:1234/disk"},
		{"NBD://10.0.0.1:10809/", "nbd://10.0.0.1:10809/"},
		{"nbds://[::1]:99/a%20b", "nbds://[::1]:99/a%20b"},
		{"nbd+unix:///exp?socket=/run/nbd/s.sock", "nbd+unix:///exp?socket=/run/nbd/s.sock"},
		{"nbd+unix:///?socket=/run//nbd/./s.sock", "nbd+unix:///?socket=/run/nbd/s.sock"},
		{"nbds+unix:///e?socket=/tmp/a%20b", "nbds+unix:///e?socket=/tmp/a+b"},
	} {
		got, err := nbdleaf.Canonical(c.in)
		if err != nil || got != c.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", c.in, got, err, c.want)
			continue
		}
		if again, err := nbdleaf.Canonical(got); again != got || err != nil {
			t.Errorf("Canonical(%q) = %q, %v: not a fixed point", got, again, err)
		}
		if !nbdleaf.IsRef(c.in) {
			t.Errorf("IsRef(%q) = false", c.in)
		}
	}
	for _, bad := range []string{
		"/dev/pmem0", "7:0", "file.img", "http://x/y",
		"nbd+unix:///e?socket=relative.sock", // relative socket path
		"nbd+unix:///e",                      // no socket
		"nbd://user@host/e", "nbd://host:0/e", "nbd://host/e?x=1", "nbd://host/e#f", "nbd:///e",
	} {
		if _, err := nbdleaf.Canonical(bad); !errors.Is(err, nbdleaf.ErrNotRef) {
			t.Errorf("Canonical(%q): %v, want ErrNotRef", bad, err)
		}
	}
	for _, path := range []string{"/dev/pmem0", "nbd", "nbd:/x", "./nbd://x"} {
		if nbdleaf.IsRef(path) {
			t.Errorf("IsRef(%q) = true", path)
		}
	}
}

func TestIdentitySame(t *testing.T) {
	base := nbdleaf.Identity{Kind: "nbd", URI: "nbd+unix:///e?socket=/run/s", Size: 1 << 30}
	with := func(f func(*nbdleaf.Identity)) nbdleaf.Identity { id := base; f(&id); return id }
	for _, c := range []struct {
		name string
		a, b nbdleaf.Identity
		same bool
	}{
		{"itself", base, base, true},
		{"URI spelled otherwise", base, with(func(id *nbdleaf.Identity) { id.URI = "nbd+unix:///e?socket=/run//s" }), true},
		{"other size", base, with(func(id *nbdleaf.Identity) { id.Size++ }), false},
		{"a description appears", base, with(func(id *nbdleaf.Identity) { id.Description = "uuid" }), false},
		{"other description", with(func(id *nbdleaf.Identity) { id.Description = "uuid-a" }),
			with(func(id *nbdleaf.Identity) { id.Description = "uuid-b" }), false},
		{"same description", with(func(id *nbdleaf.Identity) { id.Description = "uuid-a" }),
			with(func(id *nbdleaf.Identity) { id.Description = "uuid-a" }), true},
		{"other export", base, with(func(id *nbdleaf.Identity) { id.URI = "nbd+unix:///f?socket=/run/s" }), false},
		{"other socket", base, with(func(id *nbdleaf.Identity) { id.URI = "nbd+unix:///e?socket=/run/t" }), false},
		{"TLS or not", base, with(func(id *nbdleaf.Identity) { id.URI = "nbds+unix:///e?socket=/run/s" }), false},
		{"another kind", base, with(func(id *nbdleaf.Identity) { id.Kind = "file" }), false},
		{"empty", nbdleaf.Identity{}, nbdleaf.Identity{}, false},
		{"bad URI", with(func(id *nbdleaf.Identity) { id.URI = "x" }), with(func(id *nbdleaf.Identity) { id.URI = "x" }), false},
	} {
		if got := c.a.Same(c.b); got != c.same {
			t.Errorf("%s: Same = %v", c.name, got)
		}
		if got := c.b.Same(c.a); got != c.same {
			t.Errorf("%s: Same (the other way) = %v", c.name, got)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	id := nbdleaf.Identity{Kind: "nbd", URI: "nbd://h:1/e", Size: 4096, Description: "d"}
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"kind":"nbd","uri":"nbd://h:1/e","size":4096,"description":"d"}` {
		t.Errorf("JSON %s", b)
	}
	got, err := nbdleaf.ParseIdentity(b)
	if err != nil || got != id {
		t.Errorf("ParseIdentity(%s) = %+v, %v", b, got, err)
	}
	if got, err := nbdleaf.ParseIdentity([]byte(`{"kind":"nbd","uri":"nbd://h/e","size":0}`)); err != nil || got.URI != "nbd://h:10809/e" {
		t.Errorf("canonical on reading: %+v, %v", got, err)
	}
	for _, bad := range []string{
		``, `null`, `[]`, `{"kind":"file","uri":"nbd://h/e","size":1}`, `{"kind":"nbd","uri":"/x","size":1}`,
		`{"kind":"nbd","uri":"nbd://h/e","size":-1}`, `{"kind":"nbd","uri":"nbd://h/e","size":1,"x":1}`,
		`{"kind":"nbd","uri":"nbd://h/e","size":1} {}`, `{"kind":"nbd","uri":"nbd://h/e","size":1.5}`,
	} {
		if _, err := nbdleaf.ParseIdentity([]byte(bad)); err == nil {
			t.Errorf("ParseIdentity(%s) took it", bad)
		}
	}
}
