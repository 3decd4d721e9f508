package stack_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/all"
)

// refFixture is the pool the refusal tests load tables into: three
// in-memory leaves named like the kernel oracle's (pmem1 is 259:1, pmem0
// is 259:0, each 1024 sectors; small is a 64-sector file), reachable by
// device number or by path; a mapped device m of 100 sectors; and an empty
// mapped device e with no table.
type refFixture struct {
	p      *stack.Pool
	leaves map[string]*stacktest.MemLeaf
	m, e   *stack.Device
}

func newRefFixture(t *testing.T) *refFixture {
	t.Helper()
	f := &refFixture{leaves: map[string]*stacktest.MemLeaf{
		"pmem1": stacktest.NewMemLeaf("259:1", "pmem1", 1024, true),
		"pmem0": stacktest.NewMemLeaf("259:0", "pmem0", 1024, true),
		"small": stacktest.NewMemLeaf("/dev/small", "small", 64, true),
	}}
	paths := map[string]*stacktest.MemLeaf{
		"259:1": f.leaves["pmem1"], "/dev/pmem1": f.leaves["pmem1"],
		"259:0": f.leaves["pmem0"], "/dev/pmem0": f.leaves["pmem0"],
		"/dev/small": f.leaves["small"],
	}
	f.p = stack.NewPool(func(ref string) (stack.Leaf, error) {
		if l, ok := paths[ref]; ok {
			return l, nil
		}
		return nil, fmt.Errorf("lookup %s: %w", ref, syscall.ENOENT)
	})
	f.m = f.mustLoad(t, "m", "0 100 linear 259:1 0")
	var err error
	if f.e, err = f.p.Create("e", ""); err != nil {
		t.Fatal(err)
	}
	return f
}

// mustLoad creates name, loads text and resumes it.
func (f *refFixture) mustLoad(t *testing.T, name, text string) *stack.Device {
	t.Helper()
	d, err := f.p.Create(name, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.LoadText(d, text, stack.SourceInline); err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if err := f.p.Resume(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *refFixture) leafDev(t *testing.T, name string) *stack.Dev {
	t.Helper()
	d, ok := f.p.Leaf(f.leaves[name].ID())
	if !ok {
		t.Fatalf("leaf %s not in the pool", name)
	}
	return d
}

// TestLoadRefusals loads one table per case into a fresh device "bad" and
// checks the refusal: the kernel's words (without its "device-mapper:
// table: " prefix, with the device name in place of its number and, where
// the kernel only prints an errno, the cause after it), the line and target
// type, the errno, and that the device is left without a table.
//
// The order of checks is the kernel's: per line, zero length, unknown type,
// "Gap in table", then the constructor (whose own checks run in its order);
// after every line, each child area against its device's size. Cases
// named "... wins" have two faults and show the earlier check reporting.
func TestLoadRefusals(t *testing.T) {
	const long = "0 2147483648 striped 2147483648 1" // 2+2*2^31 wraps to 2 in 32 bits, as in the kernel
	tests := []struct {
		name  string
		setup func(t *testing.T, f *refFixture)
		table string
		line  int
		typ   string
		want  string  // the exact message; "bad: " is the device
		is    []error // each must match with errors.Is
	}{
		// Table shape.
		{"no targets", nil, "", 0, "",
			"bad: no targets specified", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"comments only are no targets", nil, "# nothing\n\n", 0, "",
			"bad: no targets specified", []error{stack.ErrInvalid}},
		{"zero-length target", nil, "0 0 zero", 1, "zero",
			"bad: zero-length target", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"zero length wins over unknown type", nil, "0 0 nosuch", 1, "nosuch",
			"bad: zero-length target", []error{stack.ErrInvalid}},
		{"unknown target type", nil, "0 10 nosuch 1 2", 1, "nosuch",
			"bad: nosuch: unknown target type", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"unknown type of 15 characters", nil, "0 10 abcdefghijklmno", 1, "abcdefghijklmno",
			"bad: abcdefghijklmno: unknown target type", []error{stack.ErrInvalid}},
		{"unknown type wins over gap", nil, "5 10 nosuch", 1, "nosuch",
			"bad: nosuch: unknown target type", []error{stack.ErrInvalid}},
		{"first segment not at 0", nil, "1 10 zero", 1, "zero",
			"bad: zero: Gap in table (-EINVAL)", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"gap between segments", nil, "0 10 zero\n11 10 zero", 2, "zero",
			"bad: zero: Gap in table (-EINVAL)", []error{stack.ErrInvalid}},
		{"overlapping segments", nil, "0 10 zero\n9 10 zero", 2, "zero",
			"bad: zero: Gap in table (-EINVAL)", []error{stack.ErrInvalid}},
		{"segments out of order", nil, "0 10 zero\n20 5 zero\n10 10 zero", 2, "zero",
			"bad: zero: Gap in table (-EINVAL)", []error{stack.ErrInvalid}},
		{"gap wins over constructor", nil, "0 10 zero\n20 10 linear", 2, "linear",
			"bad: linear: Gap in table (-EINVAL)", []error{stack.ErrInvalid}},
		{"earlier line's constructor wins over a later zero length", nil, "0 10 linear\n10 0 zero", 1, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid}},
		{"line numbers count comments", nil, "# c\n0 10 zero\n\n10 10 linear 259:1", 4, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid}},

		// linear: argument count, then the sector, then the device.
		{"linear without arguments", nil, "0 10 linear", 1, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"linear with one argument", nil, "0 10 linear 259:1", 1, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear with three arguments", nil, "0 10 linear 259:1 0 0", 1, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear sector with garbage", nil, "0 10 linear 259:1 12x", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"linear negative sector", nil, "0 10 linear 259:1 -1", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear sector with a plus sign", nil, "0 10 linear 259:1 +1", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear sector above 2^64", nil, "0 10 linear 259:1 99999999999999999999", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear sector of 2^62", nil, "0 10 linear 259:1 4611686018427387904", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear sector wins over device lookup", nil, "0 10 linear /dev/nope x", 1, "linear",
			"bad: linear: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"linear missing path", nil, "0 10 linear /dev/nope 0", 1, "linear",
			"bad: linear: Device lookup failed (-ENOENT): lookup /dev/nope: no such file or directory",
			[]error{syscall.ENOENT}},
		{"linear missing mapped device number", nil, "0 10 linear 0:99 0", 1, "linear",
			"bad: linear: Device lookup failed (-ENXIO): device does not exist: no mapped device 0:99",
			[]error{stack.ErrNotFound, syscall.ENXIO}},

		// striped: the kernel's nine checks in order.
		{"striped without arguments", nil, "0 16 striped", 1, "striped",
			"bad: striped: Not enough arguments (-EINVAL)", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"striped with one argument", nil, "0 16 striped 2", 1, "striped",
			"bad: striped: Not enough arguments (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count 0", nil, "0 16 striped 0 8 259:1 0", 1, "striped",
			"bad: striped: Invalid stripe count (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count garbage", nil, "0 16 striped 2x 8 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Invalid stripe count (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count negative", nil, "0 16 striped -2 8 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Invalid stripe count (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count above 32 bits", nil, "0 16 striped 4294967298 8 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Invalid stripe count (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count wins over chunk", nil, "0 16 striped 0 0", 1, "striped",
			"bad: striped: Invalid stripe count (-EINVAL)", []error{stack.ErrInvalid}},
		{"chunk 0", nil, "0 16 striped 2 0 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Invalid chunk_size (-EINVAL)", []error{stack.ErrInvalid}},
		{"chunk garbage", nil, "0 16 striped 2 8k 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Invalid chunk_size (-EINVAL)", []error{stack.ErrInvalid}},
		{"chunk wins over divisibility", nil, "0 15 striped 2 x", 1, "striped",
			"bad: striped: Invalid chunk_size (-EINVAL)", []error{stack.ErrInvalid}},
		{"length not divisible by stripes (oracle bad1)", nil, "0 2047 striped 2 8 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Target length not divisible by number of stripes (-EINVAL)", []error{stack.ErrInvalid}},
		{"length not divisible by chunk (oracle bad2)", nil, "0 2048 striped 2 7 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Target length not divisible by chunk size (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe width not divisible by chunk", nil, "0 16 striped 2 3 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Target length not divisible by chunk size (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripes divisibility wins over chunk divisibility", nil, "0 15 striped 2 7 259:1 0 259:0 0", 1, "striped",
			"bad: striped: Target length not divisible by number of stripes (-EINVAL)", []error{stack.ErrInvalid}},
		{"too few destinations", nil, "0 16 striped 2 8 259:1 0", 1, "striped",
			"bad: striped: Not enough destinations specified (-EINVAL)", []error{stack.ErrInvalid}},
		{"too many destinations", nil, "0 16 striped 2 8 259:1 0 259:0 0 259:1 8", 1, "striped",
			"bad: striped: Not enough destinations specified (-EINVAL)", []error{stack.ErrInvalid}},
		{"odd destination count", nil, "0 16 striped 2 8 259:1 0 259:0", 1, "striped",
			"bad: striped: Not enough destinations specified (-EINVAL)", []error{stack.ErrInvalid}},
		{"divisibility wins over destinations", nil, "0 15 striped 2 8 259:1 0", 1, "striped",
			"bad: striped: Target length not divisible by number of stripes (-EINVAL)", []error{stack.ErrInvalid}},
		{"stripe count wrapping the argument check fails allocation", nil, long, 1, "striped",
			"bad: striped: Memory allocation for striped context failed (-ENOMEM): cannot allocate memory",
			[]error{syscall.ENOMEM}},
		{"bad stripe offset", nil, "0 16 striped 2 8 259:1 0 259:0 x", 1, "striped",
			`bad: striped: Couldn't parse stripe destination (-EINVAL): invalid argument: invalid offset "x" of stripe 1`,
			[]error{stack.ErrInvalid, syscall.EINVAL}},
		{"negative stripe offset", nil, "0 16 striped 2 8 259:1 -8 259:0 0", 1, "striped",
			`bad: striped: Couldn't parse stripe destination (-EINVAL): invalid argument: invalid offset "-8" of stripe 0`,
			[]error{stack.ErrInvalid}},
		{"stripe lookup failure", nil, "0 16 striped 2 8 259:1 0 /dev/nope 0", 1, "striped",
			"bad: striped: Couldn't parse stripe destination (-ENOENT): lookup /dev/nope: no such file or directory",
			[]error{syscall.ENOENT}},
		{"stripe 0 lookup wins over stripe 1 offset", nil, "0 16 striped 2 8 /dev/nope 0 259:0 x", 1, "striped",
			"bad: striped: Couldn't parse stripe destination (-ENOENT): lookup /dev/nope: no such file or directory",
			[]error{syscall.ENOENT}},
		{"stripe offset wins over its own lookup", nil, "0 16 striped 2 8 259:1 0 /dev/nope x", 1, "striped",
			`bad: striped: Couldn't parse stripe destination (-EINVAL): invalid argument: invalid offset "x" of stripe 1`,
			[]error{stack.ErrInvalid}},

		// error: 0 or 2 arguments; with 2, the sector and then the device.
		{"error with a bad sector", nil, "0 10 error 259:1 x", 1, "error",
			"bad: error: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"error with a missing device", nil, "0 10 error /dev/nope 0", 1, "error",
			"bad: error: Device lookup failed (-ENOENT): lookup /dev/nope: no such file or directory",
			[]error{syscall.ENOENT}},
		{"error sector wins over device", nil, "0 10 error /dev/nope x", 1, "error",
			"bad: error: Invalid device sector (-EINVAL)", []error{stack.ErrInvalid}},
		{"error device too small", nil, "0 2000 error 259:1 0", 1, "error",
			"bad: pmem1 too small for target: start=0, len=2000, dev_size=1024", []error{stack.ErrInvalid}},

		// zero.
		{"zero with an argument", nil, "0 10 zero x", 1, "zero",
			"bad: zero: No arguments required (-EINVAL)", []error{stack.ErrInvalid, syscall.EINVAL}},

		// Child areas, checked after every constructor.
		{"linear too big for its leaf (oracle bad3)", nil, "0 100000000 linear 259:1 0", 1, "linear",
			"bad: pmem1 too small for target: start=0, len=100000000, dev_size=1024", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"linear ends one past its leaf", nil, "0 25 linear 259:1 1000", 1, "linear",
			"bad: pmem1 too small for target: start=1000, len=25, dev_size=1024", []error{stack.ErrInvalid}},
		{"linear starts at the leaf's end", nil, "0 1 linear 259:1 1024", 1, "linear",
			"bad: pmem1 too small for target: start=1024, len=1, dev_size=1024", []error{stack.ErrInvalid}},
		{"second stripe too small", nil, "0 64 striped 2 8 259:1 0 /dev/small 40", 1, "striped",
			"bad: small too small for target: start=40, len=32, dev_size=64", []error{stack.ErrInvalid}},
		{"first stripe too small", nil, "0 64 striped 2 8 /dev/small 40 /dev/small 48", 1, "striped",
			"bad: small too small for target: start=40, len=32, dev_size=64", []error{stack.ErrInvalid}},
		{"mapped child too small", nil, "0 200 linear m 0", 1, "linear",
			"bad: m too small for target: start=0, len=200, dev_size=100", []error{stack.ErrInvalid}},
		{"later constructor wins over an earlier area", nil, "0 2000 linear 259:1 0\n2000 10 linear", 2, "linear",
			"bad: linear: Invalid argument count (-EINVAL)", []error{stack.ErrInvalid}},
		{"first bad area wins", nil, "0 10 zero\n10 2000 linear 259:1 0\n2010 100 linear /dev/small 0", 2, "linear",
			"bad: pmem1 too small for target: start=0, len=2000, dev_size=1024", []error{stack.ErrInvalid}},

		// Device references the kernel or daxstack refuses.
		{"own device by name", nil, "0 10 linear bad 0", 1, "linear",
			"bad: linear: Device lookup failed (-EINVAL): invalid argument: a table cannot use its own device bad",
			[]error{stack.ErrInvalid, syscall.EINVAL}},
		{"own device by /dev/mapper path", nil, "0 10 linear /dev/mapper/bad 0", 1, "linear",
			"bad: linear: Device lookup failed (-EINVAL): invalid argument: a table cannot use its own device bad",
			[]error{stack.ErrInvalid}},
		{"own device by number", nil, "0 10 linear 0:2 0", 1, "linear",
			"bad: linear: Device lookup failed (-EINVAL): invalid argument: a table cannot use its own device bad",
			[]error{stack.ErrInvalid}},
		{"own device as a stripe", nil, "0 16 striped 2 8 259:1 0 bad 0", 1, "striped",
			"bad: striped: Couldn't parse stripe destination (-EINVAL): invalid argument: a table cannot use its own device bad",
			[]error{stack.ErrInvalid}},
		{"cycle across three devices", func(t *testing.T, f *refFixture) {
			f.mustLoad(t, "c", "0 10 linear bad 0") // bad exists with no table yet: size 0, not checked
			f.mustLoad(t, "b2", "0 10 linear c 0")
			f.mustLoad(t, "a", "0 10 linear b2 0")
		}, "0 10 linear a 0", 1, "linear",
			"bad: linear: Device lookup failed (-ELOOP): device would depend on itself: a already uses bad (a -> b2 -> c -> bad)",
			[]error{stack.ErrLoop, syscall.ELOOP}},
		{"cycle through an inactive table", func(t *testing.T, f *refFixture) {
			c, err := f.p.Create("c", "")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.p.LoadText(c, "0 10 linear bad 0", stack.SourceInline); err != nil { // loaded, not resumed
				t.Fatal(err)
			}
		}, "0 10 linear c 0", 1, "linear",
			"bad: linear: Device lookup failed (-ELOOP): device would depend on itself: c already uses bad (c -> bad)",
			[]error{stack.ErrLoop}},
		{"leaf held by a claim", func(t *testing.T, f *refFixture) {
			if _, err := f.p.ClaimLeaf("259:0", "xfs"); err != nil {
				t.Fatal(err)
			}
		}, "0 10 linear 259:0 0", 1, "linear",
			"bad: linear: Device lookup failed (-EBUSY): device or resource busy: pmem0 is held by xfs",
			[]error{stack.ErrBusy, syscall.EBUSY}},
		{"leaf held by a claim, by another path", func(t *testing.T, f *refFixture) {
			if _, err := f.p.ClaimLeaf("259:0", "xfs"); err != nil {
				t.Fatal(err)
			}
		}, "0 16 striped 2 8 259:1 0 /dev/pmem0 0", 1, "striped",
			"bad: striped: Couldn't parse stripe destination (-EBUSY): device or resource busy: pmem0 is held by xfs",
			[]error{stack.ErrBusy, syscall.EBUSY}},
		{"mapped device held by a claim", func(t *testing.T, f *refFixture) {
			if err := f.p.Claim(f.m.Dev(), "ext4"); err != nil {
				t.Fatal(err)
			}
		}, "0 10 linear m 0", 1, "linear",
			"bad: linear: Device lookup failed (-EBUSY): device or resource busy: m is held by ext4",
			[]error{stack.ErrBusy, syscall.EBUSY}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefFixture(t)
			bad, err := f.p.Create("bad", "") // minor 2, after m and e
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, f)
			}
			leavesBefore := len(f.p.Leaves())
			err = f.p.LoadText(bad, tc.table, stack.SourceInline)
			if err == nil {
				t.Fatalf("table loaded:\n%s", bad.Inactive())
			}
			var te *stack.TableError
			if !errors.As(err, &te) {
				t.Fatalf("error %T %v is not a *TableError", err, err)
			}
			if te.Error() != tc.want {
				t.Errorf("message\n got %q\nwant %q", te.Error(), tc.want)
			}
			if te.Device != "bad" || te.Line != tc.line || te.Type != tc.typ {
				t.Errorf("Device, Line, Type = %q, %d, %q; want \"bad\", %d, %q", te.Device, te.Line, te.Type, tc.line, tc.typ)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not match %v", err, want)
				}
			}
			if bad.Inactive() != nil || bad.Active() != nil {
				t.Errorf("refused table left in a slot")
			}
			if n := len(f.p.Leaves()); n != leavesBefore {
				t.Errorf("refused load changed the pool's leaves: %d -> %d", leavesBefore, n)
			}
		})
	}
}

// TestLoadAccepts covers tables the kernel takes that look odd: error with
// one or three arguments (ignored), a child with no table (size 0, not
// checked), a stripe count with a plus sign, non-power-of-two chunks, and
// the same leaf twice in one table.
func TestLoadAccepts(t *testing.T) {
	tests := []struct {
		name, table, printed string
		devs                 int // distinct children
	}{
		{"error without arguments", "0 10 error", "0 10 error ", 0},
		{"error with one argument is ignored", "0 10 error 259:1", "0 10 error ", 0},
		{"error with three arguments is ignored", "0 10 error /dev/nope x y", "0 10 error ", 0},
		{"error with a device prints none", "0 10 error 259:1 5", "0 10 error ", 1},
		{"zero", "0 10 zero", "0 10 zero ", 0},
		{"linear by path prints the device number", "0 10 linear /dev/pmem1 5", "0 10 linear 259:1 5", 1},
		{"linear to the last sector", "0 24 linear 259:1 1000", "0 24 linear 259:1 1000", 1},
		{"child with no table is not size-checked", "0 10 linear e 5", "0 10 linear e 5", 1},
		{"mapped child by number", "0 10 linear 0:0 5", "0 10 linear m 5", 1},
		{"mapped child by /dev/mapper path", "0 10 linear /dev/mapper/m 5", "0 10 linear m 5", 1},
		{"stripe count with a plus sign", "0 16 striped +2 8 259:1 0 259:0 0", "0 16 striped 2 8 259:1 0 259:0 0", 2},
		{"chunk not a power of two", "0 36 striped 3 3 259:1 0 259:0 0 /dev/small 0", "0 36 striped 3 3 259:1 0 259:0 0 /dev/small 0", 3},
		{"one stripe", "0 8 striped 1 8 259:1 0", "0 8 striped 1 8 259:1 0", 1},
		{"same leaf twice", "0 16 striped 2 8 259:1 0 259:1 512\n16 10 linear /dev/pmem1 900", "0 16 striped 2 8 259:1 0 259:1 512\n16 10 linear 259:1 900", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefFixture(t)
			d := f.mustLoad(t, "ok", tc.table)
			if got := d.Active().String(); got != tc.printed {
				t.Errorf("printed\n%q\nwant\n%q", got, tc.printed)
			}
			if n := len(d.Active().Devs()); n != tc.devs {
				t.Errorf("%d children, want %d", n, tc.devs)
			}
		})
	}
}

// TestLoadBuildLimits checks refusals only reachable through Build with
// lines made in code: lengths that would overflow the table's sector range.
func TestLoadBuildLimits(t *testing.T) {
	tests := []struct {
		name  string
		lines []stack.Line
		want  string
	}{
		{"length past 2^62", []stack.Line{{No: 1, Start: 0, Len: 1<<62 + 1, Type: "zero"}},
			"bad: zero: table longer than 4611686018427387904 sectors (-EINVAL)"},
		{"length wrapping 2^64", []stack.Line{{No: 1, Start: 0, Len: 10, Type: "zero"}, {No: 2, Start: 10, Len: 1<<64 - 5, Type: "zero"}},
			"bad: zero: table longer than 4611686018427387904 sectors (-EINVAL)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefFixture(t)
			bad, _ := f.p.Create("bad", "")
			tb, err := f.p.Build(bad, tc.lines)
			var te *stack.TableError
			if !errors.As(err, &te) || te.Error() != tc.want || !errors.Is(err, stack.ErrInvalid) {
				t.Fatalf("Build = %v, %v; want %q", tb, err, tc.want)
			}
		})
	}
}

// TestDeviceNames checks names and UUIDs as dmsetup and the kernel check
// them: no '/', not "control", "." or "..", shorter than DM_NAME_LEN (128)
// and DM_UUID_LEN (129) bytes, unique.
func TestDeviceNames(t *testing.T) {
	n127, n128 := strings.Repeat("n", 127), strings.Repeat("n", 128)
	u128, u129 := strings.Repeat("u", 128), strings.Repeat("u", 129)
	tests := []struct {
		name, dev, uuid string
		want            string // exact error text; "" to accept
		is              []error
	}{
		{"plain", "vol0", "", "", nil},
		{"name of 127 bytes", n127, "", "", nil},
		{"uuid of 128 bytes", "vol0", u128, "", nil},
		{"characters dmsetup would mangle", "a b:c=d@e", "", "", nil},
		{"empty", "", "", "invalid argument: device name cannot be empty", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"slash", "a/b", "", `invalid argument: Name "a/b" invalid. It contains "/".`, []error{stack.ErrInvalid}},
		{"only a slash", "/", "", `invalid argument: Name "/" invalid. It contains "/".`, []error{stack.ErrInvalid}},
		{"mapper path", "/dev/mapper/x", "", `invalid argument: Name "/dev/mapper/x" invalid. It contains "/".`, []error{stack.ErrInvalid}},
		{"control", "control", "", `invalid argument: device name cannot be "control", ".", or ".."`, []error{stack.ErrInvalid}},
		{"dot", ".", "", `invalid argument: device name cannot be "control", ".", or ".."`, []error{stack.ErrInvalid}},
		{"dot dot", "..", "", `invalid argument: device name cannot be "control", ".", or ".."`, []error{stack.ErrInvalid}},
		{"name of 128 bytes", n128, "", `invalid argument: Name "` + n128 + `" too long.`, []error{stack.ErrInvalid}},
		{"name with a quote, printed raw", `a"` + n127[:126], "", `invalid argument: Name "a"` + n127[:126] + `" too long.`, []error{stack.ErrInvalid}},
		{"uuid of 129 bytes", "vol0", u129, `invalid argument: UUID "` + u129 + `" too long.`, []error{stack.ErrInvalid, syscall.EINVAL}},
		{"name checked before uuid", "a/b", u129, `invalid argument: Name "a/b" invalid. It contains "/".`, []error{stack.ErrInvalid}},
		{"name in use", "m", "", "device already exists: a device named m exists", []error{stack.ErrExists, syscall.EBUSY}},
		{"uuid in use", "vol0", "UUID-M", "device already exists: uuid UUID-M is in use by m", []error{stack.ErrExists, syscall.EBUSY}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := stack.NewPool(nil)
			if _, err := p.Create("m", "UUID-M"); err != nil {
				t.Fatal(err)
			}
			d, err := p.Create(tc.dev, tc.uuid)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got, err := p.Device(tc.dev); err != nil || got != d {
					t.Errorf("Device(%q) = %v, %v", tc.dev, got, err)
				}
				if tc.uuid != "" {
					if got, err := p.DeviceByUUID(tc.uuid); err != nil || got != d {
						t.Errorf("DeviceByUUID = %v, %v", got, err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("created %q", tc.dev)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not match %v", err, want)
				}
			}
			if len(p.Devices()) != 1 {
				t.Errorf("refused create left %d devices", len(p.Devices()))
			}
		})
	}
}

func TestCreateMinor(t *testing.T) {
	p := stack.NewPool(nil)
	a, err := p.CreateMinor("a", "", 5)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.CreateMinor("b", "", 5)
	if !errors.Is(err, stack.ErrExists) || !errors.Is(err, syscall.EBUSY) || err.Error() != "device already exists: minor 5 is in use by a" {
		t.Fatalf("CreateMinor on a used minor: %v", err)
	}
	// Create takes the lowest free minor, skipping 5.
	for i, want := range []uint32{0, 1, 2, 3, 4, 6} {
		d, err := p.Create(fmt.Sprintf("d%d", i), "")
		if err != nil || d.Minor() != want {
			t.Fatalf("Create d%d: minor %d, %v; want %d", i, d.Minor(), err, want)
		}
	}
	if got, err := p.Device("0:5"); err != nil || got != a {
		t.Errorf("Device(0:5) = %v, %v", got, err)
	}
	for _, ref := range []string{"1:5", "0:77", "0:x", "nosuch"} {
		if _, err := p.Device(ref); !errors.Is(err, stack.ErrNotFound) || !errors.Is(err, syscall.ENXIO) {
			t.Errorf("Device(%q): %v, want ErrNotFound", ref, err)
		}
	}
}

// TestRename checks rename as the kernel's dm_hash_rename does it: the new
// name must be valid and free (even the device's own name is taken), and
// tables that use the device print its new name.
func TestRename(t *testing.T) {
	tests := []struct {
		name, to string
		want     string // exact error text; "" to accept
		is       []error
	}{
		{"to a free name", "renamed", "", nil},
		{"to a taken name", "b", "device or resource busy: Unable to change name on mapped device a to one that already exists: b",
			[]error{stack.ErrBusy, syscall.EBUSY}},
		{"to its own name", "a", "device or resource busy: Unable to change name on mapped device a to one that already exists: a",
			[]error{stack.ErrBusy, syscall.EBUSY}},
		{"to an empty name", "", "invalid argument: device name cannot be empty", []error{stack.ErrInvalid, syscall.EINVAL}},
		{"to a path", "x/y", `invalid argument: Name "x/y" invalid. It contains "/".`, []error{stack.ErrInvalid}},
		{"to control", "control", `invalid argument: device name cannot be "control", ".", or ".."`, []error{stack.ErrInvalid}},
		{"to a long name", strings.Repeat("r", 128), `invalid argument: Name "` + strings.Repeat("r", 128) + `" too long.`, []error{stack.ErrInvalid}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefFixture(t)
			a := f.mustLoad(t, "a", "0 10 linear 259:1 0")
			f.mustLoad(t, "b", "0 8 linear a 2")
			err := f.p.Rename(a, tc.to)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("Rename: %v, want %q", err, tc.want)
				}
				for _, want := range tc.is {
					if !errors.Is(err, want) {
						t.Errorf("error %v does not match %v", err, want)
					}
				}
				if a.Name() != "a" {
					t.Errorf("refused rename changed the name to %q", a.Name())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Name() != tc.to {
				t.Errorf("Name() = %q", a.Name())
			}
			if _, err := f.p.Device("a"); !errors.Is(err, stack.ErrNotFound) {
				t.Errorf("old name still found: %v", err)
			}
			if got, err := f.p.Device(tc.to); err != nil || got != a {
				t.Errorf("new name: %v, %v", got, err)
			}
			b, _ := f.p.Device("b")
			if got := b.Active().String(); got != "0 8 linear "+tc.to+" 2" {
				t.Errorf("user's table prints %q", got)
			}
		})
	}
	t.Run("a removed device", func(t *testing.T) {
		f := newRefFixture(t)
		a := f.mustLoad(t, "a", "0 10 zero")
		if err := f.p.Remove(a); err != nil {
			t.Fatal(err)
		}
		if err := f.p.Rename(a, "z"); !errors.Is(err, stack.ErrNotFound) {
			t.Errorf("Rename of a removed device: %v", err)
		}
	})
}

// TestSetUUID checks the kernel's rules for setting a UUID after creation:
// a non-empty, free UUID, once.
func TestSetUUID(t *testing.T) {
	tests := []struct {
		name      string
		have, set string
		want      string
		is        []error
	}{
		{"set once", "", "U-1", "", nil},
		{"already set", "U-1", "U-2",
			"invalid argument: Unable to change uuid of mapped device a to U-2 because uuid is already set to U-1",
			[]error{stack.ErrInvalid, syscall.EINVAL}},
		{"in use elsewhere", "", "U-B",
			"device already exists: Unable to change uuid on mapped device a to one that already exists: U-B",
			[]error{stack.ErrExists, syscall.EBUSY}},
		{"in use is checked before already set", "U-1", "U-B",
			"device already exists: Unable to change uuid on mapped device a to one that already exists: U-B",
			[]error{stack.ErrExists, syscall.EBUSY}},
		{"its own uuid is in use too", "U-1", "U-1",
			"device already exists: Unable to change uuid on mapped device a to one that already exists: U-1",
			[]error{stack.ErrExists}},
		{"empty", "", "",
			"invalid argument: Invalid new mapped device name or uuid string supplied.",
			[]error{stack.ErrInvalid, syscall.EINVAL}},
		{"too long", "", strings.Repeat("u", 129),
			`invalid argument: UUID "` + strings.Repeat("u", 129) + `" too long.`,
			[]error{stack.ErrInvalid}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := stack.NewPool(nil)
			a, err := p.Create("a", tc.have)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Create("b", "U-B"); err != nil {
				t.Fatal(err)
			}
			err = p.SetUUID(a, tc.set)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got, err := p.DeviceByUUID(tc.set); err != nil || got != a || a.UUID() != tc.set {
					t.Errorf("DeviceByUUID(%q) = %v, %v", tc.set, got, err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("SetUUID: %v, want %q", err, tc.want)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not match %v", err, want)
				}
			}
			if a.UUID() != tc.have {
				t.Errorf("refused SetUUID changed the uuid to %q", a.UUID())
			}
			// An empty UUID must never become a key: another device
			// setting a real one is unaffected.
			c, _ := p.Create("c", "")
			if err := p.SetUUID(c, "U-C"); err != nil {
				t.Errorf("SetUUID on another device after the refusal: %v", err)
			}
		})
	}
}

// TestRemoveBusy checks that Remove refuses a device used by another
// table, in either slot, or held by a claim, and what it releases after.
func TestRemoveBusy(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *refFixture, child *stack.Device) (undo func() error)
		want  string
	}{
		{"used by an active table", func(t *testing.T, f *refFixture, child *stack.Device) func() error {
			u := f.mustLoad(t, "user", "0 10 linear child 0")
			return func() error { return f.p.Remove(u) }
		}, "device or resource busy: child is used by user"},
		{"used by an inactive table", func(t *testing.T, f *refFixture, child *stack.Device) func() error {
			u, _ := f.p.Create("user", "")
			if err := f.p.LoadText(u, "0 10 linear child 0", stack.SourceInline); err != nil {
				t.Fatal(err)
			}
			return func() error { return f.p.Clear(u) }
		}, "device or resource busy: child is used by user"},
		{"used by an inactive table replacing an active one", func(t *testing.T, f *refFixture, child *stack.Device) func() error {
			u := f.mustLoad(t, "user", "0 10 zero")
			if err := f.p.LoadText(u, "0 10 linear child 0", stack.SourceInline); err != nil {
				t.Fatal(err)
			}
			return func() error { return f.p.Clear(u) }
		}, "device or resource busy: child is used by user"},
		{"used by two devices", func(t *testing.T, f *refFixture, child *stack.Device) func() error {
			u1 := f.mustLoad(t, "u1", "0 10 linear child 0")
			u2 := f.mustLoad(t, "u2", "0 16 striped 2 8 child 0 259:0 0")
			return func() error { return errors.Join(f.p.Remove(u2), f.p.Remove(u1)) }
		}, "device or resource busy: child is used by u1, u2"},
		{"held by a claim", func(t *testing.T, f *refFixture, child *stack.Device) func() error {
			if err := f.p.Claim(child.Dev(), "xfs"); err != nil {
				t.Fatal(err)
			}
			return func() error { return f.p.Release(child.Dev(), "xfs") }
		}, "device or resource busy: child is held by xfs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefFixture(t)
			child := f.mustLoad(t, "child", "0 100 linear 259:1 0")
			undo := tc.setup(t, f, child)
			err := f.p.Remove(child)
			if err == nil || err.Error() != tc.want || !errors.Is(err, stack.ErrBusy) || !errors.Is(err, syscall.EBUSY) {
				t.Fatalf("Remove: %v, want ErrBusy %q", err, tc.want)
			}
			if got, err := f.p.Device("child"); err != nil || got != child || child.Active() == nil {
				t.Fatalf("refused Remove changed the device")
			}
			if err := undo(); err != nil {
				t.Fatal(err)
			}
			if err := f.p.Remove(child); err != nil {
				t.Fatalf("Remove once unused: %v", err)
			}
			if _, err := f.p.Device("child"); !errors.Is(err, stack.ErrNotFound) {
				t.Errorf("removed device still found: %v", err)
			}
			if _, err := f.p.Device("0:2"); !errors.Is(err, stack.ErrNotFound) {
				t.Errorf("removed device's number still found: %v", err)
			}
			if err := f.p.Remove(child); !errors.Is(err, stack.ErrNotFound) || !errors.Is(err, syscall.ENXIO) {
				t.Errorf("second Remove: %v", err)
			}
			// The leaf only child used is released.
			if users := f.p.Users(f.leafDev(t, "pmem1")); len(users) != 1 || users[0] != f.m {
				t.Errorf("pmem1 users after remove: %v", users)
			}
		})
	}
}

// TestResumeAndClear checks the two table slots: Load fills the inactive
// one without touching the active one (and leaves it as it was when
// refused), Resume swaps and is a no-op without an inactive table, Clear
// drops the inactive table and what it used.
func TestResumeAndClear(t *testing.T) {
	f := newRefFixture(t)
	d := f.mustLoad(t, "d", "0 10 linear 259:1 0")
	active := d.Active()
	g := f.p.Graph()

	t.Run("resume without an inactive table is a no-op", func(t *testing.T) {
		if err := f.p.Resume(d); err != nil {
			t.Fatal(err)
		}
		if d.Active() != active || d.Inactive() != nil || d.Suspended() {
			t.Fatalf("Resume changed the device")
		}
		if f.p.Graph() != g {
			t.Errorf("Resume with nothing to swap rebuilt the graph")
		}
	})
	t.Run("resume of a suspended device without an inactive table", func(t *testing.T) {
		if err := f.p.Suspend(d); err != nil || !d.Suspended() {
			t.Fatalf("Suspend: %v, suspended %v", err, d.Suspended())
		}
		if err := f.p.Resume(d); err != nil || d.Suspended() || d.Active() != active {
			t.Fatalf("Resume: %v, suspended %v", err, d.Suspended())
		}
	})
	t.Run("a refused load keeps the inactive table", func(t *testing.T) {
		if err := f.p.LoadText(d, "0 20 linear 259:0 0", stack.SourceInline); err != nil {
			t.Fatal(err)
		}
		inactive := d.Inactive()
		if err := f.p.LoadText(d, "0 20 linear /dev/nope 0", stack.SourceInline); err == nil {
			t.Fatal("bad table loaded")
		}
		if d.Inactive() != inactive || d.Active() != active {
			t.Fatalf("refused load changed a slot")
		}
	})
	t.Run("clear drops the inactive table and its children", func(t *testing.T) {
		pmem0 := f.leafDev(t, "pmem0")
		if users := f.p.Users(pmem0); len(users) != 1 || users[0] != d {
			t.Fatalf("pmem0 users %v", users)
		}
		if err := f.p.Clear(d); err != nil {
			t.Fatal(err)
		}
		if d.Inactive() != nil || d.Active() != active {
			t.Fatalf("Clear: inactive %v", d.Inactive())
		}
		if _, ok := f.p.Leaf(f.leaves["pmem0"].ID()); ok {
			t.Errorf("pmem0 still held by the pool after its only user was cleared")
		}
		if err := f.p.Clear(d); err != nil {
			t.Errorf("Clear without an inactive table: %v", err)
		}
	})
	t.Run("resume swaps", func(t *testing.T) {
		if err := f.p.LoadText(d, "0 20 zero", stack.SourceInline); err != nil {
			t.Fatal(err)
		}
		if d.Active() != active || d.Size() != 10 {
			t.Fatalf("Load changed the active table")
		}
		next := d.Inactive()
		if err := f.p.Resume(d); err != nil {
			t.Fatal(err)
		}
		if d.Active() != next || d.Inactive() != nil || d.Size() != 20 {
			t.Fatalf("Resume did not swap")
		}
		if f.p.Graph() == g {
			t.Errorf("graph not rebuilt after a swap")
		}
	})
	t.Run("removed device", func(t *testing.T) {
		if err := f.p.Remove(d); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"Load":    f.p.LoadText(d, "0 1 zero", stack.SourceInline),
			"Resume":  f.p.Resume(d),
			"Suspend": f.p.Suspend(d),
			"Clear":   f.p.Clear(d),
		} {
			if !errors.Is(err, stack.ErrNotFound) {
				t.Errorf("%s on a removed device: %v", name, err)
			}
		}
	})
}

// TestClaim checks the exclusive external holder: one per device, not on a
// device a table uses, released only by its holder.
func TestClaim(t *testing.T) {
	f := newRefFixture(t)
	pmem1 := f.leafDev(t, "pmem1") // used by m
	if err := f.p.Claim(pmem1, "xfs"); err == nil || err.Error() != "device or resource busy: pmem1 is used by mapped device m" || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Claim of a used leaf: %v", err)
	}
	if err := f.p.Claim(f.m.Dev(), ""); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("Claim with no holder: %v", err)
	}
	if err := f.p.Claim(f.m.Dev(), "xfs"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Claim(f.m.Dev(), "xfs"); err != nil {
		t.Errorf("second Claim by the same holder: %v", err)
	}
	if err := f.p.Claim(f.m.Dev(), "ext4"); err == nil || err.Error() != "device or resource busy: m is held by xfs" {
		t.Errorf("Claim by another holder: %v", err)
	}
	if h := f.p.Holder(f.m.Dev()); h != "xfs" {
		t.Errorf("Holder = %q", h)
	}
	if err := f.p.Release(f.m.Dev(), "ext4"); !errors.Is(err, stack.ErrNotFound) {
		t.Errorf("Release by another holder: %v", err)
	}
	if err := f.p.Release(f.m.Dev(), "xfs"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Release(f.m.Dev(), "xfs"); !errors.Is(err, stack.ErrNotFound) {
		t.Errorf("second Release: %v", err)
	}
	// A claimed leaf nothing uses stays known to the pool until released.
	small, err := f.p.ClaimLeaf("/dev/small", "db")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := f.p.Leaf(f.leaves["small"].ID()); !ok || got != small {
		t.Errorf("claimed leaf not in the pool")
	}
	if err := f.p.Release(small, "db"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.p.Leaf(f.leaves["small"].ID()); ok {
		t.Errorf("released leaf still in the pool")
	}
	if _, err := f.p.ClaimLeaf("/dev/nope", "db"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ClaimLeaf of a missing path: %v", err)
	}
}

// TestReloadCycle: three devices stacked a <- b <- c, all active; a reload
// of a that would use c (by name, by path or by number) is refused with
// ErrLoop and leaves every table as it was.
func TestReloadCycle(t *testing.T) {
	for _, ref := range []string{"c", "/dev/mapper/c", "0:4"} {
		t.Run(ref, func(t *testing.T) {
			f := newRefFixture(t)
			a := f.mustLoad(t, "a", "0 64 linear 259:1 0")
			f.mustLoad(t, "b", "0 32 linear a 16")
			c := f.mustLoad(t, "c", "0 16 linear b 8")
			if c.Minor() != 4 {
				t.Fatalf("c has minor %d", c.Minor())
			}
			before := a.Active()
			err := f.p.LoadText(a, "0 8 linear "+ref+" 0", stack.SourceInline)
			var te *stack.TableError
			if !errors.As(err, &te) || !errors.Is(err, stack.ErrLoop) || !errors.Is(err, syscall.ELOOP) {
				t.Fatalf("reload: %v", err)
			}
			if want := "a: linear: Device lookup failed (-ELOOP): device would depend on itself: c already uses a (c -> b -> a)"; te.Error() != want {
				t.Errorf("message\n got %q\nwant %q", te.Error(), want)
			}
			if a.Active() != before || a.Inactive() != nil {
				t.Errorf("refused reload changed a's tables")
			}
			// The same reload without the cycle goes through.
			if err := f.p.LoadText(a, "0 8 linear 259:0 0", stack.SourceInline); err != nil {
				t.Fatal(err)
			}
		})
	}
}
