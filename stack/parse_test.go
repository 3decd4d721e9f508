package stack_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// TestParseTextRefusals checks every way ParseText refuses a table, with
// dmsetup's exact words. dmsetup reads each line with
// sscanf("%llu %llu %s %n") and reports "Invalid format on line N of table
// X." where X is the file name, "on stdin", or empty for --table. Where
// sscanf would take a sign or stop at trailing garbage, daxstack refuses
// the line with the same message (the kernel reference asks a port to be
// strict about numbers).
func TestParseTextRefusals(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		source string
		line   int
		want   string
	}{
		{"inline source has an empty name", "x", stack.SourceInline, 1,
			"Invalid format on line 1 of table ."},
		{"stdin", "0 10 zero\nfoo", stack.SourceStdin, 2,
			"Invalid format on line 2 of table on stdin."},
		{"file name", "0 10", "/etc/daxstack/t1", 1,
			"Invalid format on line 1 of table /etc/daxstack/t1."},
		{"non-numeric start", "a 10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"non-numeric length", "0 ten zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"two fields", "0 10", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"one field", "0", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"negative start", "-1 10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"negative length", "0 -10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"plus sign", "+0 10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"trailing garbage on start", "0x 10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"trailing garbage on length", "0 10k zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"hex", "0 0x10 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"exponent", "0 1e3 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"length above 2^62", "0 4611686018427387905 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"length above 2^64", "0 99999999999999999999999 zero", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"length of exactly 2^62", "0 4611686018427387904 zero", stack.SourceStdin, 1,
			"Line 1 ends at sector 4611686018427387904, past the largest device size of 18014398509481976 sectors."},
		{"length past the largest device", "0 18014398509481977 zero", stack.SourceStdin, 1,
			"Line 1 ends at sector 18014398509481977, past the largest device size of 18014398509481976 sectors."},
		{"end past the largest device", "8 8 zero\n16 18014398509481961 zero", stack.SourceStdin, 2,
			"Line 2 ends at sector 18014398509481977, past the largest device size of 18014398509481976 sectors."},
		{"lines count blanks and comments", "\n# comment\n   \n0 x zero", stack.SourceStdin, 4,
			"Invalid format on line 4 of table on stdin."},
		{"CRLF lines count once", "0 10 zero\r\n10 y zero\r\n", stack.SourceStdin, 2,
			"Invalid format on line 2 of table on stdin."},
		{"first bad line wins", "0 10 zero\nbad\nworse", stack.SourceStdin, 2,
			"Invalid format on line 2 of table on stdin."},
		{"type name of 16 characters", "0 10 abcdefghijklmnop", stack.SourceStdin, 1,
			"Target type name abcdefghijklmnop is too long."},
		{"format error before a long type name later", "x\n0 10 abcdefghijklmnopq", stack.SourceStdin, 1,
			"Invalid format on line 1 of table on stdin."},
		{"long type name before a format error later", "0 10 abcdefghijklmnopq\nx", stack.SourceStdin, 1,
			"Target type name abcdefghijklmnopq is too long."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := stack.ParseText(tc.text, tc.source)
			if err == nil {
				t.Fatalf("parsed as %v", lines)
			}
			var te *stack.TableError
			if !errors.As(err, &te) {
				t.Fatalf("error %T %v is not a *TableError", err, err)
			}
			if te.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", te.Error(), tc.want)
			}
			if te.Line != tc.line {
				t.Errorf("Line = %d, want %d", te.Line, tc.line)
			}
			if !errors.Is(err, stack.ErrInvalid) || !errors.Is(err, syscall.EINVAL) {
				t.Errorf("error %v does not match ErrInvalid and EINVAL", err)
			}
		})
	}
}

// TestParseTextAccepts checks what ParseText keeps: blank and comment lines
// are skipped, whitespace of any kind separates fields, the parameters run
// from the first non-space after the type up to an inline '#', and every
// line keeps its number in the text.
func TestParseTextAccepts(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []stack.Line
	}{
		{"single line", "0 10 linear /a 0",
			[]stack.Line{{No: 1, Start: 0, Len: 10, Type: "linear", Params: "/a 0"}}},
		{"the largest device (lvm2's error device)", "0 18014398509481976 error",
			[]stack.Line{{No: 1, Start: 0, Len: 18014398509481976, Type: "error", Params: ""}}},
		{"no parameters", "0 10 error",
			[]stack.Line{{No: 1, Len: 10, Type: "error"}}},
		{"trailing whitespace dropped", "0 10 error \t \r",
			[]stack.Line{{No: 1, Len: 10, Type: "error"}}},
		{"blank, whitespace and comment lines skipped", "\n  \n# a comment\n   # indented\n0 10 zero\n\n10 5 zero\n",
			[]stack.Line{{No: 5, Len: 10, Type: "zero"}, {No: 7, Start: 10, Len: 5, Type: "zero"}}},
		{"inline comment keeps the space before it", "0 10 linear /a 0 # the rest",
			[]stack.Line{{No: 1, Len: 10, Type: "linear", Params: "/a 0 "}}},
		{"comment right after the parameters", "0 10 linear /a 0#x",
			[]stack.Line{{No: 1, Len: 10, Type: "linear", Params: "/a 0"}}},
		{"comment in place of the parameters", "0 10 error #nothing",
			[]stack.Line{{No: 1, Len: 10, Type: "error"}}},
		{"hash inside the type is part of it", "0 10 ab#c d",
			[]stack.Line{{No: 1, Len: 10, Type: "ab#c", Params: "d"}}},
		{"tabs and runs of spaces", "\t0\t\t10   striped\t2 8 /a 0   /b 0",
			[]stack.Line{{No: 1, Len: 10, Type: "striped", Params: "2 8 /a 0   /b 0"}}},
		{"CRLF", "0 10 zero\r\n10 10 zero\r\n",
			[]stack.Line{{No: 1, Len: 10, Type: "zero"}, {No: 2, Start: 10, Len: 10, Type: "zero"}}},
		{"escaped space stays in the parameters", `0 10 linear /my\ leaf 0`,
			[]stack.Line{{No: 1, Len: 10, Type: "linear", Params: `/my\ leaf 0`}}},
		{"leading zeros", "00 010 zero",
			[]stack.Line{{No: 1, Len: 10, Type: "zero"}}},
		{"type name of 15 characters", "0 1 abcdefghijklmno",
			[]stack.Line{{No: 1, Len: 1, Type: "abcdefghijklmno"}}},
		{"lines are not checked against each other here", "5 0 nosuch\n0 1 zero",
			[]stack.Line{{No: 1, Start: 5, Len: 0, Type: "nosuch"}, {No: 2, Len: 1, Type: "zero"}}},
		{"empty text", "", nil},
		{"comments only", "# one\n#two", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stack.ParseText(tc.text, stack.SourceStdin)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestFormatLine checks the shape `dmsetup table` prints: "%llu %llu %s "
// followed by the parameters, so a target with none keeps a trailing space.
func TestFormatLine(t *testing.T) {
	tests := []struct {
		name              string
		start, length     uint64
		typ, params, want string
	}{
		{"with parameters", 0, 2048, "linear", "259:1 64", "0 2048 linear 259:1 64"},
		{"error keeps the trailing space", 1000, 16, "error", "", "1000 16 error "},
		{"zero keeps the trailing space", 1216, 32, "zero", "", "1216 32 zero "},
		{"large numbers", 1 << 40, 1 << 61, "zero", "", "1099511627776 2305843009213693952 zero "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := stack.FormatLine(tc.start, tc.length, tc.typ, tc.params); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			l := stack.Line{Start: tc.start, Len: tc.length, Type: tc.typ, Params: tc.params}
			if got := l.String(); got != tc.want {
				t.Errorf("Line.String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSplitArgs checks the kernel's dm_split_args rules.
func TestSplitArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"only spaces", " \t\n ", nil},
		{"plain", "2 8 /a 0", []string{"2", "8", "/a", "0"}},
		{"runs of whitespace", "  a\t\tb \n c  ", []string{"a", "b", "c"}},
		{"escaped space", `my\ leaf 0`, []string{"my leaf", "0"}},
		{"escaped backslash", `a\\b`, []string{`a\b`}},
		{"escaped ordinary character", `\a\b`, []string{"ab"}},
		{"escaped tab", "a\\\tb", []string{"a\tb"}},
		{"trailing backslash is literal", `a\`, []string{`a\`}},
		{"lone backslash", `\`, []string{`\`}},
		{"escaped space alone is an argument", `\ `, []string{" "}},
		// The kernel's isspace has 0xA0 (Latin-1's no-break space), and
		// dm_split_args goes byte by byte: U+00A0 is C2 A0 in UTF-8.
		{"byte 0xA0 is kernel whitespace", "a\xa0b c", []string{"a", "b", "c"}},
		{"inside UTF-8 too", "a\u00a0b", []string{"a\xc2", "b"}},
		{"escaped 0xA0", "a\\\xa0b", []string{"a\xa0b"}},
		{"other non-ASCII is not whitespace", "pmem\u00e9 \x85\x9f", []string{"pmem\u00e9", "\x85\x9f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := stack.SplitArgs(tc.in)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("SplitArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestEscapeArgRoundTrip: SplitArgs(EscapeArg(x)) == [x] for every
// non-empty x, and strings without whitespace or backslashes are left
// alone.
func TestEscapeArgRoundTrip(t *testing.T) {
	tests := []struct{ name, in, escaped string }{
		{"plain", "/dev/pmem0", "/dev/pmem0"},
		{"space", "my leaf", `my\ leaf`},
		{"backslash", `a\b`, `a\\b`},
		{"trailing backslash", `a\`, `a\\`},
		{"every C space", "\t\n\v\f\r ", "\\\t\\\n\\\v\\\f\\\r\\ "},
		{"0xA0 escaped, byte by byte", "pmem\u00a0é", "pmem\xc2\\\xa0é"},
		{"other non-ASCII untouched", "pmemé\x85", "pmemé\x85"},
		{"invalid UTF-8 untouched", "a\xffb", "a\xffb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := stack.EscapeArg(tc.in)
			if e != tc.escaped {
				t.Errorf("EscapeArg(%q) = %q, want %q", tc.in, e, tc.escaped)
			}
			if got := stack.SplitArgs(e); len(got) != 1 || got[0] != tc.in {
				t.Errorf("SplitArgs(%q) = %q, want [%q]", e, got, tc.in)
			}
		})
	}
}

// TestParseConcise checks dmsetup's --concise format: ';' between devices,
// ',' between fields and extra table lines, '\' escaping ',', ';' and '\'.
func TestParseConcise(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []stack.ConciseDevice
		err  string // substring of the error, when refused
	}{
		{"dmsetup usage example", "dev1,,,,0 100 linear 253:1 0,100 100 error;dev2,,,ro,0 1 error",
			[]stack.ConciseDevice{
				{Name: "dev1", Lines: []string{"0 100 linear 253:1 0", "100 100 error"}},
				{Name: "dev2", ReadOnly: true, Lines: []string{"0 1 error"}},
			}, ""},
		{"uuid, minor and rw", "a,UUID-1,7,rw,0 8 zero",
			[]stack.ConciseDevice{{Name: "a", UUID: "UUID-1", Minor: "7", Lines: []string{"0 8 zero"}}}, ""},
		{"escaped comma in the name", `a\,b,,,,0 1 zero`,
			[]stack.ConciseDevice{{Name: "a,b", Lines: []string{"0 1 zero"}}}, ""},
		{"escaped semicolon in a table line", `a,,,,0 1 linear /x\;y 0`,
			[]stack.ConciseDevice{{Name: "a", Lines: []string{"0 1 linear /x;y 0"}}}, ""},
		{"escaped backslash", `a\\,,,,0 1 zero`,
			[]stack.ConciseDevice{{Name: `a\`, Lines: []string{"0 1 zero"}}}, ""},
		{"other escapes are kept for the table splitter", `a,,,,0 1 linear /my\ leaf 0`,
			[]stack.ConciseDevice{{Name: "a", Lines: []string{`0 1 linear /my\ leaf 0`}}}, ""},
		{"empty specs are skipped", ";a,,,,0 1 zero;; ;",
			[]stack.ConciseDevice{{Name: "a", Lines: []string{"0 1 zero"}}}, ""},
		{"empty input", "", nil, ""},
		{"too few fields", "a,,,", nil, "incorrect concise device specification"},
		{"escaped comma does not count as a field", `a\,,\,,\,,\,`, nil, "incorrect concise device specification"},
		{"bad flags", "a,,,rx,0 1 zero", nil, `invalid flags "rx"`},
		{"bad flags in the second device", "a,,,,0 1 zero;b,,,RO,0 1 zero", nil, `invalid flags "RO"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stack.ParseConcise(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, stack.ErrInvalid) || !errors.Is(err, syscall.EINVAL) {
					t.Fatalf("error %v, want ErrInvalid containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.Name != w.Name || g.UUID != w.UUID || g.Minor != w.Minor || g.ReadOnly != w.ReadOnly ||
					strings.Join(g.Lines, "\n") != strings.Join(w.Lines, "\n") || len(g.Lines) != len(w.Lines) {
					t.Errorf("device %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// TestEscapeConciseRoundTrip: a field escaped with EscapeConcise comes back
// unchanged from ParseConcise.
func TestEscapeConciseRoundTrip(t *testing.T) {
	for _, name := range []string{"plain", "a,b", "a;b", `a\b`, `trailing\`, `\,;\\`} {
		t.Run(name, func(t *testing.T) {
			in := stack.EscapeConcise(name) + ",,,," + stack.EscapeConcise("0 1 linear "+name+" 0")
			got, err := stack.ParseConcise(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Name != name || got[0].Lines[0] != "0 1 linear "+name+" 0" {
				t.Errorf("ParseConcise(%q) = %+v", in, got)
			}
		})
	}
}
