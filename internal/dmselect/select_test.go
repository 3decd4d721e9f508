package dmselect

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var fields = []Field{
	{"name", String}, {"uuid", String}, {"suspended", String}, {"open", Number}, {"minor", Number}, {"attr", String},
}

type dev struct {
	name, uuid, suspended string
	open, minor           uint64
}

func (d dev) row(f string) Value {
	switch f {
	case "name":
		return Value{S: d.name}
	case "uuid":
		return Value{S: d.uuid}
	case "suspended":
		return Value{S: d.suspended}
	case "open":
		return Value{N: d.open}
	case "minor":
		return Value{N: d.minor}
	}
	return Value{}
}

var devs = []dev{
	{"LVMTEST1pv1", "TEST-LVMTEST1pv1", "Active", 0, 0},
	{"LVMTEST1pv2", "TEST-LVMTEST1pv2", "Suspended", 1, 1},
	{"other", "", "Active", 2, 2},
	{"vg-lv", "LVM-abc", "Suspended", 0, 3},
}

func selected(t *testing.T, expr string) []string {
	t.Helper()
	s, err := Parse(expr, fields)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	var out []string
	for _, d := range devs {
		if s.Match(d.row) {
			out = append(out, d.name)
		}
	}
	return out
}

func TestSelect(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		// lvm2's test library (aux_t.sh): teardown and probes.
		{"name=~LVMTEST1 || uuid=~LVMTEST1", []string{"LVMTEST1pv1", "LVMTEST1pv2"}},
		{"name=~LVMTEST1&&suspended=Suspended", []string{"LVMTEST1pv2"}},
		{"name=~^LVMTEST1pv1$", []string{"LVMTEST1pv1"}},
		{"", []string{"LVMTEST1pv1", "LVMTEST1pv2", "other", "vg-lv"}},
		{"name=other", []string{"other"}},
		{"name='other'", []string{"other"}},
		{`name="vg-lv"`, []string{"vg-lv"}},
		{"name!=other", []string{"LVMTEST1pv1", "LVMTEST1pv2", "vg-lv"}},
		{"name!~LVMTEST", []string{"other", "vg-lv"}},
		{"open>0", []string{"LVMTEST1pv2", "other"}},
		{"open>=1 && open<2", []string{"LVMTEST1pv2"}},
		{"open<=0", []string{"LVMTEST1pv1", "vg-lv"}},
		{"open=2", []string{"other"}},
		{"open=1.9", []string{"LVMTEST1pv2"}}, // strtoull stops at the point
		{"suspended=Active,open=0", []string{"LVMTEST1pv1"}},
		{"minor=0#minor=3", []string{"LVMTEST1pv1", "vg-lv"}},
		{"!(name=~LVMTEST)", []string{"other", "vg-lv"}},
		{"(name=other || name=vg-lv) && open=0", []string{"vg-lv"}},
		{"name=other || name=vg-lv && open=0", []string{"other", "vg-lv"}}, // && binds tighter
		{"uuid=", []string{"other"}},
		{"name=~(LVM|vg)", []string{"LVMTEST1pv1", "LVMTEST1pv2", "vg-lv"}}, // ( ) delimit the regex: "LVM|vg"
		{"name=~{v.-}", []string{"vg-lv"}},
		{"NAME=other", []string{"other"}},
		{"  name = other  ", []string{"other"}},
		{"name=~pv1 ||name=~pv2", []string{"LVMTEST1pv1", "LVMTEST1pv2"}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			if got := selected(t, tc.expr); !slices.Equal(got, tc.want) {
				t.Errorf("selected %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectRefused(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"nosuch=1", []string{"Unrecognised selection field: nosuch", "Selection syntax error at 'nosuch=1'.", "Use 'help' for selection to get more help."}},
		{"name", []string{"Unrecognised comparison operator: ", "Selection syntax error at 'name'.", "Use 'help' for selection to get more help."}},
		{"name>a", []string{"Operator can be used only with number, size or percent fields: name", "Selection syntax error at 'name>a'.", "Use 'help' for selection to get more help."}},
		{"open=x", []string{"Failed to parse numeric value for selection field open.", "Selection syntax error at 'open=x'.", "Use 'help' for selection to get more help."}},
		{"open=1k", []string{"Found size unit specifier but numeric value expected for selection field open.", "Selection syntax error at 'open=1k'.", "Use 'help' for selection to get more help."}},
		{"name='x", []string{"Missing end quote.", "Failed to parse string value for selection field name.", "Selection syntax error at 'name='x'.", "Use 'help' for selection to get more help."}},
		{"name=a b", []string{"Expecting logical operator", "Selection syntax error at 'b'.", "Use 'help' for selection to get more help."}},
		{"!name=a", []string{"Syntax error: left parenthesis expected at 'name=a'"}},
		{"(name=a", []string{"Syntax error: right parenthesis expected at ''"}},
		{"name=a &&", []string{"Expecting field name", "Selection syntax error at ''.", "Use 'help' for selection to get more help."}},
		{"name=~", []string{"Regular expression expected for selection field name", "Selection syntax error at 'name=~'.", "Use 'help' for selection to get more help."}},
		{"name=~(", []string{"Missing end quote.", "Failed to parse regex value for selection field name.", "Selection syntax error at 'name=~('.", "Use 'help' for selection to get more help."}},
		{"open=99999999999999999999", []string{"Field selection value 99999999999999999999 out of supported range for field open.", "Selection syntax error at 'open=99999999999999999999'.", "Use 'help' for selection to get more help."}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := Parse(tc.expr, fields)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, want an *Error matching ErrSyntax", tc.expr, err)
			}
			if !slices.Equal(e.Lines, tc.want) {
				t.Errorf("lines\n%s\nwant\n%s", strings.Join(e.Lines, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestSort(t *testing.T) {
	tests := []struct {
		spec string
		want []string
	}{
		{"open,-minor", []string{"vg-lv", "LVMTEST1pv1", "LVMTEST1pv2", "other"}},
		{"-open,name", []string{"other", "LVMTEST1pv2", "LVMTEST1pv1", "vg-lv"}},
		{"+suspended,-name", []string{"other", "LVMTEST1pv1", "vg-lv", "LVMTEST1pv2"}},
		{"name", []string{"LVMTEST1pv1", "LVMTEST1pv2", "other", "vg-lv"}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			keys, err := ParseSort(tc.spec, fields)
			if err != nil {
				t.Fatal(err)
			}
			ds := slices.Clone(devs)
			slices.SortStableFunc(ds, func(a, b dev) int { return Compare(keys, a.row, b.row) })
			var got []string
			for _, d := range ds {
				got = append(got, d.name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("order %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseSort("open,nosuch", fields); err == nil || err.Error() != "Unrecognised field: nosuch" {
		t.Errorf("ParseSort of an unknown field: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"name=~X || uuid=~X", "name=~P&&suspended=Suspended", "!(open>0)", "(a=b", "name='x", "open=1.5", "minor=0#minor=3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr, fields)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Lines) == 0 {
				t.Fatalf("Parse(%q) error %v is not an *Error with lines", expr, err)
			}
			return
		}
		for _, d := range devs {
			if s.Match(d.row) != s.Match(d.row) {
				t.Fatal("Match is not deterministic")
			}
		}
	})
}
