package kscan

import (
	"strconv"
	"testing"
)

func TestUint64(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"512", 512, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, true}, // wraps, as simple_strntoull
		{"  7", 7, true},                  // leading white space is skipped
		{"\t\n\v\f\r7", 7, true},
		{"\xa07", 7, true}, // the kernel's isspace includes 0xA0
		{"", 0, false},
		{"   ", 0, false},
		{"7 ", 0, false}, // %c takes the space
		{"7\n", 0, false},
		{"7x", 0, false},
		{"x", 0, false},
		{"-1", 0, false}, // no sign for unsigned conversions
		{"+1", 0, false},
		{"0x10", 0, false},
	}
	for _, tc := range tests {
		got, ok := Uint64(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Uint64(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestUint32Wraps: the kernel oracle's delay table "99999999999" reads
// back as 1215752191 (delay.out).
func TestUint32Wraps(t *testing.T) {
	for in, want := range map[string]uint32{"99999999999": 1215752191, "4294967295": 1<<32 - 1, "4294967296": 0, "4294967297": 1} {
		if got, ok := Uint32(in); !ok || got != want {
			t.Errorf("Uint32(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// FuzzUint64: never panics, and agrees with strconv on plain decimal
// numbers that fit.
func FuzzUint64(f *testing.F) {
	for _, s := range []string{"0", "42", " 42", "42 ", "18446744073709551616", "-1", "\xa0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := Uint64(s)
		if w, err := strconv.ParseUint(s, 10, 64); err == nil && s[0] != '+' {
			if !ok || v != w {
				t.Fatalf("Uint64(%q) = %d, %v; strconv says %d", s, v, ok, w)
			}
		}
		if ok {
			if u, ok32 := Uint32(s); !ok32 || u != uint32(v) {
				t.Fatalf("Uint32(%q) = %d, %v; want %d", s, u, ok32, uint32(v))
			}
		}
	})
}

func TestEqualFold(t *testing.T) {
	tests := []struct {
		s, kw string
		want  bool
	}{
		{"enable", "enable", true},
		{"ENABLE", "enable", true},
		{"EnAbLe", "enable", true},
		{"enable ", "enable", false},
		{"enabl", "enable", false},
		{"quie\u212a", "quiek", false}, // the Kelvin sign is not an ASCII k
		{"drop_writes", "DROP_WRITES", true},
		{"drop-writes", "drop_writes", false},
		{"\xc0", "\xe0", false}, // Latin-1 capitals never meet an ASCII keyword
	}
	for _, tc := range tests {
		if got := EqualFold(tc.s, tc.kw); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.s, tc.kw, got)
		}
	}
}
