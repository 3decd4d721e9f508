package stack

import "strings"

// SplitArgs splits a target's parameter string the way the kernel's
// dm_split_args does: arguments are separated by runs of whitespace, and a
// backslash makes the next character (including whitespace or a backslash)
// part of the argument.
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
		case isSpace(c):
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

// EscapeArg quotes whitespace and backslashes in one argument so that
// SplitArgs gives it back unchanged.
func EscapeArg(a string) string {
	if !strings.ContainsFunc(a, func(r rune) bool { return r == '\\' || (r < 0x80 && isSpace(byte(r))) }) {
		return a
	}
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		if a[i] == '\\' || isSpace(a[i]) {
			b.WriteByte('\\')
		}
		b.WriteByte(a[i])
	}
	return b.String()
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
