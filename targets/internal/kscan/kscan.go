// Package kscan parses target arguments the way the kernel's sscanf
// checks of device-mapper targets do, so that dust, flakey and delay
// accept and refuse exactly the numbers the kernel does.
//
// The kernel's dm targets test a number with `sscanf(arg, "%u%c", &v,
// &dummy) != 1` (and "%llu%c" for 64 bits): the conversion skips leading
// white space (the kernel's isspace, which includes 0xA0), reads decimal
// digits with no sign, and keeps the value modulo 2^64, truncated to 32
// bits for %u (simple_strntoull's overflow is not an error); the %c must
// then find nothing, so anything after the digits refuses the argument.
// Thus "99999999999" is a valid %u: it reads as 1215752191, as the kernel
// oracle's delay table shows. EqualFold is the kernel's strcasecmp of an
// argument against a keyword.
package kscan

// Uint64 is "%llu%c" == 1.
func Uint64(s string) (uint64, bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) || s[i] < '0' || s[i] > '9' {
		return 0, false
	}
	var v uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		v = v*10 + uint64(s[i]-'0') // wraps, as simple_strntoull
	}
	return v, i == len(s)
}

// Uint32 is "%u%c" == 1: Uint64's value truncated to 32 bits.
func Uint32(s string) (uint32, bool) {
	v, ok := Uint64(s)
	return uint32(v), ok
}

// isSpace is the kernel's isspace (lib/ctype.c): HT, LF, VT, FF, CR,
// space, and the Latin-1 no-break space 0xA0.
func isSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xA0
}

// EqualFold reports whether s is keyword ignoring ASCII case: the
// kernel's strcasecmp(s, keyword) == 0 for an ASCII keyword (the kernel
// also folds Latin-1 capitals, but never onto ASCII letters). Unlike
// strings.EqualFold it folds no other Unicode letters: the Kelvin sign
// is not a "k".
func EqualFold(s, keyword string) bool {
	if len(s) != len(keyword) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], keyword[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
