package stack

import "strings"

// SplitArgs splits a target's parameter string the way the kernel's
// dm_split_args does: arguments are separated by runs of the kernel's
// white space (isspace of lib/ctype.c: space, HT, LF, VT, FF, CR and the
// byte 0xA0, Latin-1's no-break space), and a backslash makes the next
// byte (including white space or a backslash) part of the argument. The
// split is by bytes, as the kernel's: a 0xA0 byte inside a UTF-8 sequence
// (the second byte of U+00A0 or of "à") separates arguments too.
func SplitArgs(params string) []string {
	var args []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(params); i++ {
		c := params[i]
		switch {
		case c == '\\' && i+1 < len(params):
			i++
			cur.WriteByte(params[i])
			in = true
		case isKernelSpace(c):
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		args = append(args, cur.String())
	}
	return args
}

// EscapeArg quotes the kernel's white space (see SplitArgs) and
// backslashes in one argument so that SplitArgs gives it back unchanged.
func EscapeArg(a string) string {
	if !strings.ContainsFunc(a, func(r rune) bool { return r == '\\' || (r < 0x80 && isSpace(byte(r))) }) && strings.IndexByte(a, 0xA0) < 0 {
		return a
	}
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		if a[i] == '\\' || isKernelSpace(a[i]) {
			b.WriteByte('\\')
		}
		b.WriteByte(a[i])
	}
	return b.String()
}

// isSpace is C's isspace in the "C" locale: what dmsetup, in user space,
// separates a table line's fields with.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// isKernelSpace is the kernel's isspace (lib/ctype.c), which dm_split_args
// uses: C's white space and 0xA0.
func isKernelSpace(c byte) bool { return isSpace(c) || c == 0xA0 }
