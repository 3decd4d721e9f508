package stack

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/daxstack/daxstack/extent"
)

// Line is one parsed line of table text: a segment before it is built.
type Line struct {
	No     int    // 1-based line number in the text
	Start  uint64 // first sector
	Len    uint64 // length in sectors
	Type   string // target type
	Params string // the rest of the line, up to an inline '#'
}

// String formats l as a table line.
func (l Line) String() string { return FormatLine(l.Start, l.Len, l.Type, l.Params) }

// FormatLine formats one segment as `dmsetup table` prints it:
// "<start> <length> <type> <params>", with the space before params kept
// even when params is empty.
func FormatLine(start, length uint64, typ, params string) string {
	return strconv.FormatUint(start, 10) + " " + strconv.FormatUint(length, 10) + " " + typ + " " + params
}

// Where table text came from, for dmsetup's "Invalid format" message.
const (
	SourceInline = ""         // --table on the command line
	SourceStdin  = "on stdin" // read from standard input
)

// ParseText splits table text into lines the way dmsetup's _parse_line
// does: leading and trailing whitespace is trimmed, blank lines and lines
// starting with '#' are skipped, each line is "<start> <length> <type>"
// followed by parameters, and a '#' in the parameters starts a comment.
// source is a file name, SourceStdin or SourceInline, and only appears in
// the error, which is dmsetup's:
//
//	Invalid format on line 3 of table on stdin.
//
// Numbers must be plain decimal (dmsetup's sscanf would also take a sign
// or stop at trailing garbage; daxstack refuses those) and below
// extent.MaxSector.
func ParseText(text, source string) ([]Line, error) {
	var lines []Line
	for i, raw := range strings.Split(text, "\n") {
		l, ok, err := parseLine(raw, i+1, source)
		if err != nil {
			return nil, err
		}
		if ok {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

func parseLine(raw string, no int, source string) (Line, bool, error) {
	s := strings.TrimFunc(raw, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	if s == "" || s[0] == '#' {
		return Line{}, false, nil
	}
	bad := func() (Line, bool, error) {
		return Line{}, false, &TableError{
			Line: no,
			Text: fmt.Sprintf("Invalid format on line %d of table %s.", no, source),
			Err:  ErrInvalid,
		}
	}
	fields := make([]string, 0, 3)
	rest := s
	for len(fields) < 3 {
		rest = strings.TrimLeftFunc(rest, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		if rest == "" {
			return bad()
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		if end < 0 {
			end = len(rest)
		}
		fields = append(fields, rest[:end])
		rest = rest[end:]
	}
	start, ok1 := parseSector(fields[0])
	length, ok2 := parseSector(fields[1])
	if !ok1 || !ok2 {
		return bad()
	}
	if start > MaxTableSectors || length > MaxTableSectors-start {
		return Line{}, false, &TableError{
			Line: no,
			Text: fmt.Sprintf("Line %d ends at sector %d, past the largest device size of %d sectors.", no, start+length, MaxTableSectors),
			Err:  ErrInvalid,
		}
	}
	if len(fields[2]) >= maxTypeName {
		return Line{}, false, &TableError{
			Line: no,
			Text: fmt.Sprintf("Target type name %s is too long.", fields[2]),
			Err:  ErrInvalid,
		}
	}
	params := strings.TrimLeftFunc(rest, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	if i := strings.IndexByte(params, '#'); i >= 0 {
		params = params[:i]
	}
	return Line{No: no, Start: start, Len: length, Type: fields[2], Params: params}, true, nil
}

// MaxTableSectors is the largest size of a table: the kernel's largest
// block device, 2^63 bytes less one, in whole 4 KiB pages (lvm2's test
// library creates error and zero devices of exactly this size). Every
// byte offset of such a device fits an int64.
const MaxTableSectors = 18014398509481976

// parseSector parses a plain decimal sector number below extent.MaxSector.
func parseSector(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > extent.MaxSector {
		return 0, false
	}
	return v, true
}

// ParseSector parses a sector number given as an argument (the kernel's
// "%llu%c" check: decimal digits only, nothing after them), also refusing
// values of extent.MaxSector and above.
func ParseSector(s string) (uint64, bool) {
	v, ok := parseSector(s)
	return v, ok && v < extent.MaxSector
}

// ParseUint32 parses a count the way the kernel's kstrtouint(s, 10) does:
// decimal digits only (one leading '+' allowed), no trailing garbage other
// than a single newline, and within 32 bits.
func ParseUint32(s string) (uint32, bool) {
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimPrefix(s, "+")
	return parseUint32(s)
}

// ConciseDevice is one device of dmsetup's concise format
// "<name>,<uuid>,<minor>,<flags>,<table>[,<table>]...".
type ConciseDevice struct {
	Name     string
	UUID     string
	Minor    string // empty when not given
	ReadOnly bool
	Lines    []string
}

// ParseConcise parses a concise device list: devices separated by ';',
// fields and extra table lines by ',', with '\' escaping ',', ';' and '\'.
func ParseConcise(s string) ([]ConciseDevice, error) {
	var devs []ConciseDevice
	for _, spec := range splitEscaped(s, ';') {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		f := splitEscaped(spec, ',')
		for i := range f {
			f[i] = unescapeConcise(f[i])
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("%w: incorrect concise device specification %q: expected <name>,<uuid>,<minor>,<flags>,<table>", ErrInvalid, spec)
		}
		d := ConciseDevice{Name: f[0], UUID: f[1], Minor: f[2], Lines: f[4:]}
		switch f[3] {
		case "", "rw":
		case "ro":
			d.ReadOnly = true
		default:
			return nil, fmt.Errorf("%w: invalid flags %q in concise device specification (expected ro or rw)", ErrInvalid, f[3])
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// splitEscaped splits s at unescaped sep, keeping escapes in the pieces.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescapeConcise(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == ',' || s[i+1] == ';' || s[i+1] == '\\') {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EscapeConcise escapes ',', ';' and '\' for the concise format.
func EscapeConcise(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `;`, `\;`)
	return r.Replace(s)
}
