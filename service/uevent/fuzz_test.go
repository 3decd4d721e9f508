package uevent

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks, for any datagram: Parse does not panic; the fallback
// parser accepts whatever go-udev accepts and decodes it the same way; an
// accepted event's fields agree with its properties; and an event written
// back in the kernel's format parses to itself.
//
//	go test -run=^$ -fuzz=FuzzParse ./service/uevent
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "uevents", "*.bin"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("change@/a\x00=\x00K=\x00=V\x00K==\x00\x00X\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Parse(raw)

		if a, d, env, ok := parseGoUdev(raw); ok {
			fa, fd, fenv, ferr := parseFallback(raw)
			if ferr != nil {
				t.Fatalf("go-udev accepts, fallback refuses: %v", ferr)
			}
			if want, got := newEvent(a, d, env), newEvent(fa, fd, fenv); !reflect.DeepEqual(got, want) {
				t.Fatalf("fallback disagrees with go-udev:\n got %#v\nwant %#v", got, want)
			}
		}
		if err != nil {
			return
		}

		if ev.Action == "" {
			t.Fatalf("accepted an empty action: %#v", ev)
		}
		if _, ok := ev.Env[""]; ok {
			t.Fatalf("kept an empty key: %#v", ev.Env)
		}
		if ev.Subsystem != ev.Env["SUBSYSTEM"] || ev.DevType != ev.Env["DEVTYPE"] ||
			ev.DevName != strings.TrimPrefix(ev.Env["DEVNAME"], "/dev/") {
			t.Fatalf("fields disagree with properties: %#v", ev)
		}

		if strings.Contains(ev.Action, "@") {
			return // only possible from udevd's ACTION=; no kernel header for it
		}
		var b bytes.Buffer
		b.WriteString(ev.Action + "@" + ev.DevPath + "\x00")
		for _, k := range slices.Sorted(maps.Keys(ev.Env)) {
			b.WriteString(k + "=" + ev.Env[k] + "\x00")
		}
		back, err := Parse(b.Bytes())
		if err != nil {
			t.Fatalf("re-encoded %q: %v", b.Bytes(), err)
		}
		if !reflect.DeepEqual(back, ev) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", back, ev)
		}
	})
}
