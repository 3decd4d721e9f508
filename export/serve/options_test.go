package serve

import (
	"errors"
	"testing"
)

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"relative mount", Options{Mount: "dev"}, false},
		{"relative socket", Options{NBDSocket: "nbd.sock"}, false},
		{"tcp without tls", Options{NBDListen: "127.0.0.1:0"}, false},
		{"tcp insecure", Options{NBDListen: "127.0.0.1:0", Insecure: true}, true},
		{"tcp tls", Options{NBDListen: "127.0.0.1:0", TLSCert: "c", TLSKey: "k", TLSCA: "a"}, true},
		{"tcp partial tls", Options{NBDListen: "127.0.0.1:0", TLSCert: "c", TLSKey: "k"}, false},
		{"tcp tls and insecure", Options{NBDListen: "127.0.0.1:0", TLSCert: "c", TLSKey: "k", TLSCA: "a", Insecure: true}, false},
		{"tcp without nbd", Options{NBDListen: "127.0.0.1:0", NoNBD: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.withDefaults()
			if (err == nil) != tc.ok {
				t.Fatalf("withDefaults: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
		})
	}
	o, _ := Options{NoMount: true}.withDefaults()
	if !o.NoBlock || o.Mount != DefaultMount || o.NBDSocket != DefaultNBDSocket {
		t.Errorf("defaults: %+v", o)
	}
}
