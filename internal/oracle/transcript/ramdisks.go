package transcript

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// RamSectors is the size of the two brd ramdisks of dust-flakey.sh and
// delay.sh (rd_size=8192 KiB).
const RamSectors = 16384

// PmemSectors is the size of the guest's /dev/pmem1 (259:1), which the
// last part of dust-flakey.sh stacks on (dm-stack.out records its size).
const PmemSectors = 262144

// Ramdisks are the guest's block devices of the targets' sessions as
// in-memory leaves: /dev/ram0 (1:0), /dev/ram1 (1:1) and /dev/pmem1
// (259:1).
type Ramdisks struct {
	Ram0, Ram1, Pmem1 *stacktest.MemLeaf
}

// NewRamdisks returns the guest's devices, zeroed (sparse: without
// memory, for tests that build tables and call targets but move no
// data; pmem1 is always sparse, the transcripts move no data on it).
// They print as the guest printed them (1:0, 1:1, 259:1) and are
// named ram0, ram1 and pmem1 in messages, so that tables, status lines and
// size refusals read as in the transcripts.
func NewRamdisks(sparse bool) *Ramdisks {
	return &Ramdisks{
		Ram0:  stacktest.NewMemLeaf("1:0", "ram0", RamSectors, sparse),
		Ram1:  stacktest.NewMemLeaf("1:1", "ram1", RamSectors, sparse),
		Pmem1: stacktest.NewMemLeaf("259:1", "pmem1", PmemSectors, true),
	}
}

// Opener resolves the guest's paths and numbers of its devices. Anything
// else fails as the kernel's dm_get_device fails on a path that names no
// block device, with ENODEV (the transcript's "Device lookup failed
// (-ENODEV)").
func (r *Ramdisks) Opener() stack.LeafOpener {
	byRef := map[string]stack.Leaf{
		"/dev/ram0": r.Ram0, "1:0": r.Ram0,
		"/dev/ram1": r.Ram1, "1:1": r.Ram1,
		"/dev/pmem1": r.Pmem1, "259:1": r.Pmem1,
	}
	return func(ref string) (stack.Leaf, error) {
		if l, ok := byRef[ref]; ok {
			return l, nil
		}
		return nil, fmt.Errorf("lookup %s: %w", ref, syscall.ENODEV)
	}
}

// Pool returns a new pool over the devices.
func (r *Ramdisks) Pool() *stack.Pool { return stack.NewPool(r.Opener()) }

// Expect is what a `dmsetup create` of a transcript should give: built,
// or refused with the kernel's text (after "device-mapper: table:
// MAJ:MIN: ").
type Expect struct {
	Refused bool
	Text    string
	// Why, when not empty, says why the expectation is not the
	// transcript's: mainline differs from the 6.1 kernel that recorded it.
	Why string
}

// Override gives the expectation for a create step where daxstack follows
// mainline rather than the recorded 6.1 kernel; ok false keeps the
// transcript's.
type Override func(st Step) (Expect, bool)

// ReplaySession replays the device steps of s in one pool over rd (sparse
// Ramdisks when nil), in order, as the guest ran them: each `dmsetup create` builds, loads
// and resumes its table (a refused one leaves no device), `dmsetup
// remove` removes the device if the pool has it, `dmsetup remove_all`
// removes them all. Every other step is handed to visit (when not nil)
// with the pool as it then is, for the caller's own checks.
//
// The creates whose table uses target type typ are checked against what
// the kernel did: built (rc=0) or refused with the text it logged (or
// what override says instead). A refusal must read "NAME: " and the
// kernel's text, optionally followed by ": " and the cause daxstack adds,
// and match the errno the text names. Creates of other types are not
// checked: they only build what later steps use. ReplaySession returns the
// number of creates it checked.
func ReplaySession(t *testing.T, s *Session, rd *Ramdisks, typ string, override Override, visit func(Step, *stack.Pool)) int {
	t.Helper()
	if rd == nil {
		rd = NewRamdisks(true)
	}
	p := rd.Pool()
	n := 0
	for _, st := range s.Steps {
		if name, table, ok := st.Create(); ok {
			checked := strings.Contains(" "+table+" ", " "+typ+" ")
			err := create(p, name, table)
			if checked {
				n++
				checkCreate(t, st, name, override, err)
			}
			continue
		}
		if a := st.Args(); len(a) >= 2 && a[0] == "dmsetup" && a[1] == "remove_all" {
			removeAll(t, p)
			continue
		}
		if verb, dev, ok := st.Verb(); ok && verb == "remove" {
			if d, err := p.Device(dev); err == nil {
				if err := p.Remove(d); err != nil {
					t.Fatalf("line %d: remove %s: %v", st.Line, dev, err)
				}
			}
			continue
		}
		if visit != nil {
			visit(st, p)
		}
	}
	return n
}

// create does what `dmsetup create NAME --table TEXT` does.
func create(p *stack.Pool, name, table string) error {
	d, err := p.Create(name, "")
	if err != nil {
		return err
	}
	err = p.LoadText(d, table, stack.SourceInline)
	if err == nil {
		err = p.Resume(d)
	}
	if err != nil {
		p.Remove(d)
	}
	return err
}

func removeAll(t *testing.T, p *stack.Pool) {
	for len(p.Devices()) > 0 {
		removed := false
		for _, d := range p.Devices() {
			if p.Remove(d) == nil {
				removed = true
			}
		}
		if !removed {
			t.Fatalf("remove_all: %d devices left", len(p.Devices()))
		}
	}
}

func checkCreate(t *testing.T, st Step, name string, override Override, err error) {
	t.Helper()
	want := Expect{Refused: st.RC != 0}
	if want.Refused {
		text, ok := st.TableRefusal()
		if !ok {
			t.Errorf("line %d: %q refused with no kernel text", st.Line, st.Command)
			return
		}
		want.Text = text
	}
	if override != nil {
		if o, ok := override(st); ok {
			want = o
		}
	}
	label := fmt.Sprintf("line %d: %s", st.Line, st.Command)
	if want.Why != "" {
		label += " (mainline: " + want.Why + ")"
	}
	switch {
	case !want.Refused && err != nil:
		t.Errorf("%s: refused: %v", label, err)
	case want.Refused && err == nil:
		t.Errorf("%s: built, want refused with %q", label, want.Text)
	case want.Refused:
		checkRefusal(t, label, name, want.Text, err)
	}
}

func checkRefusal(t *testing.T, label, name, want string, err error) {
	t.Helper()
	var te *stack.TableError
	if !errors.As(err, &te) {
		t.Errorf("%s: error %T %v, want a *stack.TableError", label, err, err)
		return
	}
	rest, ok := strings.CutPrefix(te.Text, name+": "+want)
	if !ok || (rest != "" && !strings.HasPrefix(rest, ": ")) {
		t.Errorf("%s:\n got %q\nwant %q", label, te.Text, name+": "+want)
	}
	for e, word := range map[syscall.Errno]string{syscall.EINVAL: "(-EINVAL)", syscall.ENODEV: "(-ENODEV)", syscall.ENOMEM: "(-ENOMEM)"} {
		if strings.HasSuffix(want, word) && !errors.Is(err, e) {
			t.Errorf("%s: error %v does not match %v", label, err, e)
		}
	}
	if !strings.Contains(want, "(-") && !errors.Is(err, syscall.EINVAL) {
		t.Errorf("%s: error %v does not match EINVAL (the ioctl's Invalid argument)", label, err)
	}
}
