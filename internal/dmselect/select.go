package dmselect

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind is the type of a report field.
type Kind uint8

// The kinds dmsetup's info fields have.
const (
	String Kind = iota
	Number
)

// Field is a report column that selections and sort keys may name.
type Field struct {
	Name string
	Kind Kind
}

// Value is a row's value of one field: S for strings, N for numbers.
type Value struct {
	S string
	N uint64
}

// Row returns a row's value of the named field (one of the Fields the
// selection was parsed with).
type Row func(field string) Value

// ErrSyntax is matched by every refused selection or sort specification.
var ErrSyntax = errors.New("report selection refused")

// Error is a refused selection: the lines libdm logs for it, in order.
type Error struct{ Lines []string }

func (e *Error) Error() string { return strings.Join(e.Lines, "\n") }

// Is reports whether target is ErrSyntax.
func (e *Error) Is(target error) bool { return target == ErrSyntax }

func lookup(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if strings.EqualFold(f.Name, name) {
			return f, true
		}
	}
	return Field{}, false
}

// cmp is a comparison operator.
type cmpFlag uint8

const (
	cmpRegex cmpFlag = 1 << iota
	cmpNot
	cmpEqual
	cmpGT
	cmpLT
	cmpNumber // only numeric fields
)

// cmpOps in libdm's order: an operator comes before any that is its prefix.
var cmpOps = []struct {
	s string
	f cmpFlag
}{
	{"=~", cmpRegex},
	{"!~", cmpRegex | cmpNot},
	{"=", cmpEqual},
	{"!=", cmpNot | cmpEqual},
	{">=", cmpNumber | cmpGT | cmpEqual},
	{">", cmpNumber | cmpGT},
	{"<=", cmpNumber | cmpLT | cmpEqual},
	{"<", cmpNumber | cmpLT},
}

// logical operators, as libdm's _op_log.
type logOp uint8

const (
	opAnd logOp = 1 << iota
	opOr
	opNot
	opOpen
	opClose
)

var logOps = []struct {
	s string
	f logOp
}{
	{"&&", opAnd}, {",", opAnd}, {"||", opOr}, {"#", opOr}, {"!", opNot}, {"(", opOpen}, {")", opClose},
}

// Selection is a parsed selection expression.
type Selection struct{ root node }

type node interface{ match(Row) bool }

type andNode []node
type orNode []node
type notNode struct{ n node }

type item struct {
	field Field
	op    cmpFlag
	s     string
	n     uint64
	re    *regexp.Regexp
}

func (a andNode) match(r Row) bool {
	for _, n := range a {
		if !n.match(r) {
			return false
		}
	}
	return true
}

func (o orNode) match(r Row) bool {
	for _, n := range o {
		if n.match(r) {
			return true
		}
	}
	return false
}

func (n notNode) match(r Row) bool { return !n.n.match(r) }

func (it *item) match(r Row) bool {
	v := r(it.field.Name)
	var ok bool
	switch {
	case it.op&cmpRegex != 0:
		s := v.S
		if it.field.Kind == Number {
			s = strconv.FormatUint(v.N, 10)
		}
		ok = it.re.MatchString(s)
	case it.field.Kind == Number:
		switch {
		case it.op&cmpGT != 0:
			ok = v.N > it.n || (it.op&cmpEqual != 0 && v.N == it.n)
		case it.op&cmpLT != 0:
			ok = v.N < it.n || (it.op&cmpEqual != 0 && v.N == it.n)
		default:
			ok = v.N == it.n
		}
	default:
		ok = v.S == it.s
	}
	if it.op&cmpNot != 0 {
		return !ok
	}
	return ok
}

// Match reports whether the row passes the selection. A nil Selection
// (no -S given) passes every row.
func (s *Selection) Match(r Row) bool { return s == nil || s.root.match(r) }

type parser struct {
	fields []Field
	in     string
	err    []string
}

func (p *parser) fail(lines ...string) { p.err = append(p.err, lines...) }

func skipSpace(s string) string { return strings.TrimLeft(s, " \t\n\v\f\r") }

// tokLog returns the logical operator s starts with (after spaces), among
// expect, and the rest after it.
func tokLog(s string, expect logOp) (logOp, string) {
	t := skipSpace(s)
	for _, o := range logOps {
		if o.f&expect != 0 && strings.HasPrefix(t, o.s) {
			return o.f, t[len(o.s):]
		}
	}
	return 0, s
}

const (
	syntaxAt = "Selection syntax error at '%s'."
	helpRef  = "Use 'help' for selection to get more help."
)

// Parse parses expr as a selection over fields. An empty expr selects
// every row (a nil Selection).
func Parse(expr string, fields []Field) (*Selection, error) {
	if expr == "" {
		return nil, nil
	}
	if strings.EqualFold(expr, "help") || expr == "?" {
		return nil, &Error{Lines: []string{"Selection help is not available here; the fields are those of -o."}}
	}
	p := &parser{fields: fields, in: expr}
	root, rest, ok := p.or(expr)
	if !ok {
		return nil, &Error{Lines: p.err}
	}
	if rest = skipSpace(rest); rest != "" {
		return nil, &Error{Lines: []string{"Expecting logical operator", fmt.Sprintf(syntaxAt, rest), helpRef}}
	}
	return &Selection{root: root}, nil
}

func (p *parser) or(s string) (node, string, bool) { return chainOf[orNode](s, p.and, opOr) }

func (p *parser) and(s string) (node, string, bool) { return chainOf[andNode](s, p.term, opAnd) }

// chainOf reads one or more of next joined by the logical operator op: a
// single operand stands for itself, more make a node of kind N.
func chainOf[N interface {
	~[]node
	node
}](s string, next func(string) (node, string, bool), op logOp) (node, string, bool) {
	var set N
	for {
		n, rest, ok := next(s)
		if !ok {
			return nil, s, false
		}
		set = append(set, n)
		found, after := tokLog(rest, op)
		if found == 0 {
			if len(set) == 1 {
				return set[0], rest, true
			}
			return set, rest, true
		}
		s = after
	}
}

func (p *parser) term(s string) (node, string, bool) {
	op, after := tokLog(s, opNot|opOpen)
	switch op {
	case opNot:
		op2, inner := tokLog(after, opOpen)
		if op2 == 0 {
			p.fail(fmt.Sprintf("Syntax error: left parenthesis expected at '%s'", after))
			return nil, s, false
		}
		n, rest, ok := p.or(inner)
		if !ok {
			return nil, s, false
		}
		op3, rest2 := tokLog(rest, opClose)
		if op3 == 0 {
			p.fail(fmt.Sprintf("Syntax error: right parenthesis expected at '%s'", rest))
			return nil, s, false
		}
		return notNode{n}, rest2, true
	case opOpen:
		n, rest, ok := p.or(after)
		if !ok {
			return nil, s, false
		}
		op3, rest2 := tokLog(rest, opClose)
		if op3 == 0 {
			p.fail(fmt.Sprintf("Syntax error: right parenthesis expected at '%s'", rest))
			return nil, s, false
		}
		return n, rest2, true
	}
	return p.selection(skipSpace(s))
}

func isFieldChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// selection parses FIELD OP VALUE at s (spaces skipped).
func (p *parser) selection(s string) (node, string, bool) {
	bad := func(lines ...string) (node, string, bool) {
		p.fail(lines...)
		p.fail(fmt.Sprintf(syntaxAt, s), helpRef)
		return nil, s, false
	}
	i := 0
	for i < len(s) && isFieldChar(s[i]) {
		i++
	}
	if i == 0 {
		return bad("Expecting field name")
	}
	name, rest := s[:i], s[i:]
	f, ok := lookup(p.fields, name)
	if !ok {
		return bad("Unrecognised selection field: " + name)
	}
	var op cmpFlag
	found := false
	t := skipSpace(rest)
	for _, o := range cmpOps {
		if strings.HasPrefix(t, o.s) {
			op, rest, found = o.f, t[len(o.s):], true
			break
		}
	}
	if !found {
		return bad("Unrecognised comparison operator: " + rest)
	}
	if op&cmpNumber != 0 && f.Kind != Number {
		return bad("Operator can be used only with number, size or percent fields: " + name)
	}
	it := &item{field: f, op: op}
	rest = skipSpace(rest)
	switch {
	case op&cmpRegex != 0:
		if rest == "" {
			return bad("Regular expression expected for selection field " + f.Name)
		}
		var end byte
		switch rest[0] {
		case '(':
			end = ')'
		case '{':
			end = '}'
		case '[':
			end = ']'
		case '"', '\'':
			end = rest[0]
		}
		if end != 0 {
			rest = rest[1:]
		}
		v, after, ok := tokString(rest, end)
		if !ok {
			return bad("Missing end quote.", "Failed to parse regex value for selection field "+f.Name+".")
		}
		re, err := regexp.Compile(v)
		if err != nil {
			return bad("dm_report: failed to create regex matcher for selection field " + f.Name)
		}
		it.re, rest = re, after
	case f.Kind == Number:
		j := 0
		dot := false
		for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || (!dot && rest[j] == '.')) {
			if rest[j] == '.' {
				dot = true
			}
			j++
		}
		if j == 0 {
			return bad("Failed to parse numeric value for selection field " + f.Name + ".")
		}
		if j < len(rest) && strings.IndexByte("bBsSkKmMgGtTpPeEhH%", rest[j]) >= 0 {
			if rest[j] == '%' {
				return bad("Found percent value but numeric value expected for selection field " + f.Name + ".")
			}
			return bad("Found size unit specifier but numeric value expected for selection field " + f.Name + ".")
		}
		num := rest[:j]
		if k := strings.IndexByte(num, '.'); k >= 0 {
			num = num[:k] // strtoull stops at the point
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil && num != "" {
			return bad(fmt.Sprintf("Field selection value %s out of supported range for field %s.", rest[:j], f.Name))
		}
		it.n, rest = n, rest[j:]
	default:
		var end byte
		if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
			end, rest = rest[0], rest[1:]
		}
		v, after, ok := tokString(rest, end)
		if !ok {
			return bad("Missing end quote.", "Failed to parse string value for selection field "+f.Name+".")
		}
		it.s, rest = v, after
	}
	return it, skipSpace(rest), true
}

// tokString reads a value: up to end when it is set (a quote or a
// bracket), else up to a space, a logical operator or ")".
func tokString(s string, end byte) (v, rest string, ok bool) {
	if end != 0 {
		i := strings.IndexByte(s, end)
		if i < 0 {
			return "", s, false
		}
		return s[:i], s[i+1:], true
	}
	i := 0
	for i < len(s) {
		if s[i] == ' ' {
			break
		}
		if op, _ := tokLog(s[i:], opAnd|opOr|opClose); op != 0 {
			break
		}
		i++
	}
	return s[:i], s[i:], true
}
