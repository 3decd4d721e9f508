package oracle

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

// Ramdisks are the guest's /dev/ram0 (1:0) and /dev/ram1 (1:1) of the
// targets' sessions, as in-memory leaves.
type Ramdisks struct {
	Ram0, Ram1 *stacktest.MemLeaf
}

// NewRamdisks returns two zeroed ramdisks of RamSectors sectors (sparse:
// without memory, for tests that build tables but do no I/O). They print
// as the guest printed them (1:0, 1:1) and are named ram0 and ram1 in
// messages, so that tables, status lines and size refusals read as in the
// transcripts.
func NewRamdisks(sparse bool) *Ramdisks {
	return &Ramdisks{
		Ram0: stacktest.NewMemLeaf("1:0", "ram0", RamSectors, sparse),
		Ram1: stacktest.NewMemLeaf("1:1", "ram1", RamSectors, sparse),
	}
}

// Opener resolves the guest's names for the ramdisks, /dev/ram0 and
// /dev/ram1, and their numbers 1:0 and 1:1. Anything else fails as the
// kernel's dm_get_device fails on a path that names no block device, with
// ENODEV (the transcript's "Device lookup failed (-ENODEV)").
func (r *Ramdisks) Opener() stack.LeafOpener {
	byRef := map[string]stack.Leaf{"/dev/ram0": r.Ram0, "1:0": r.Ram0, "/dev/ram1": r.Ram1, "1:1": r.Ram1}
	return func(ref string) (stack.Leaf, error) {
		if l, ok := byRef[ref]; ok {
			return l, nil
		}
		return nil, fmt.Errorf("lookup %s: %w", ref, syscall.ENODEV)
	}
}

// Pool returns a new pool over the ramdisks.
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

// CheckCreates builds, in a fresh pool over fresh ramdisks, the table of
// every `dmsetup create` step of s that uses target type typ, and checks
// the outcome against what the kernel did: built (rc=0) or refused with
// the logged text. A refusal's text must be "NAME: " and the kernel's
// text, optionally followed by ": " and the cause daxstack adds; a refusal
// the kernel logged as -EINVAL must also match syscall.EINVAL, and so on
// for the errno in the text. It returns how many steps it checked.
func CheckCreates(t *testing.T, s *Session, typ string, override Override) int {
	t.Helper()
	n := 0
	for _, st := range s.Steps {
		name, table, ok := st.Create()
		if !ok || !strings.Contains(" "+table+" ", " "+typ+" ") {
			continue
		}
		want := Expect{Refused: st.RC != 0}
		if want.Refused {
			text, ok := st.TableRefusal()
			if !ok {
				t.Errorf("line %d: %q refused with no kernel text", st.Line, st.Command)
				continue
			}
			want.Text = text
		}
		if override != nil {
			if o, ok := override(st); ok {
				want = o
			}
		}
		n++
		p := NewRamdisks(true).Pool()
		d, err := p.Create(name, "")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := stack.ParseText(table, stack.SourceInline)
		if err == nil {
			_, err = p.Build(d, lines)
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
	return n
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
}
