package dust_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
	_ "github.com/daxstack/daxstack/targets/all"
)

func session(t *testing.T) *transcript.Session { return transcript.Load(t, "dust-flakey.out") }

// TestOracleCreates: every dust table of dust-flakey.out is built or
// refused as the kernel did, with its words and errno (17 creates: grep
// -c '^\$ dmsetup create .* dust ').
func TestOracleCreates(t *testing.T) {
	if n := transcript.ReplaySession(t, session(t), nil, "dust", nil, nil); n != 17 {
		t.Errorf("checked %d dust creates, the transcript has 17", n)
	}
}

// dustOf returns the dust target of a one-segment device, or nil.
func dustOf(p *stack.Pool, name string) (*stack.Device, stack.Target) {
	d, err := p.Device(name)
	if err != nil || d.Active() == nil {
		return nil, nil
	}
	segs := d.Active().Segments()
	if len(segs) != 1 || segs[0].Type != "dust" {
		return nil, nil
	}
	return d, segs[0].Target
}

// TestOracleSession replays dust-flakey.out's dust devices step by step:
// every message (reply or refusal, with the kernel's logged words), every
// status and table line, and every O_DIRECT read and write (through the
// target's MapIO, failing or not as the guest's did), in the guest's
// order, so that each outcome depends on the state the earlier steps left.
// The busybox and buffered dd lines are not replayed: they read whole
// pages through the page cache (NOTES-targets.md).
func TestOracleSession(t *testing.T) {
	var messages, reports, ios int
	transcript.ReplaySession(t, session(t), nil, "dust", nil, func(st transcript.Step, p *stack.Pool) {
		if name, _, words, ok := st.Message(); ok {
			if _, tgt := dustOf(p, name); tgt != nil {
				messages++
				checkMessage(t, st, tgt.(stack.Messager), words)
			}
			return
		}
		if verb, name, ok := st.Verb(); ok && (verb == "status" || verb == "table") {
			d, tgt := dustOf(p, name)
			if tgt == nil {
				return
			}
			reports++
			got := d.Active().StatusLines()
			if verb == "table" {
				got = d.Active().Lines()
			}
			if strings.Join(got, "\n") != strings.Join(st.Out, "\n") || st.RC != 0 {
				t.Errorf("line %d: %s printed %q, the kernel %q (rc=%d)", st.Line, st.Command, got, st.Out, st.RC)
			}
			return
		}
		if io, ok := st.IO(); ok {
			_, tgt := dustOf(p, io.Dev)
			if tgt == nil {
				return // flakey's and delay's (the count below says none of dust's was missed)
			}
			ios++
			b := &stack.Bio{Op: stack.OpRead, Pos: io.Sector * stack.SectorSize, Len: io.Count * stack.SectorSize}
			b.Data = make([]byte, b.Len)
			if io.Write {
				b.Op = stack.OpWrite
			}
			act, err := tgt.(stack.IOMapper).MapIO(b)
			switch {
			case io.OK && (act != stack.Remap || err != nil):
				t.Errorf("line %d: %s: MapIO = %v, %v; the kernel's went through", st.Line, st.Note, act, err)
			case !io.OK && (act != stack.Kill || !errors.Is(err, syscall.EIO)):
				t.Errorf("line %d: %s: MapIO = %v, %v; the kernel's failed with EIO", st.Line, st.Note, act, err)
			}
		}
	})
	// grep -c '^\$ dmsetup message dust' (59), '^\$ dmsetup \(status\|table\) dust' (11),
	// '^# d\(read\|write\) /dev/mapper/dust' (27).
	if messages != 59 || reports != 11 || ios != 27 {
		t.Errorf("replayed %d messages, %d status and table lines, %d I/Os; the transcript has 59, 17, 33", messages, reports, ios)
	}
}

// checkMessage compares one message with the kernel's: a reply is what
// dmsetup printed (the shell's $(...) dropped a final newline, so the
// reply's is dropped too); a refusal matches EINVAL and carries the
// words the kernel logged, or none when it logged none.
func checkMessage(t *testing.T, st transcript.Step, m stack.Messager, words []string) {
	t.Helper()
	reply, err := m.Message(words)
	if st.RC == 0 {
		if err != nil {
			t.Errorf("line %d: %s: %v", st.Line, st.Command, err)
		}
		if got, want := strings.TrimSuffix(reply, "\n"), strings.Join(st.Out, "\n"); got != want {
			t.Errorf("line %d: %s replied %q, the kernel %q", st.Line, st.Command, reply, want)
		}
		return
	}
	if err == nil {
		t.Errorf("line %d: %s accepted (reply %q), the kernel refused it", st.Line, st.Command, reply)
		return
	}
	if !errors.Is(err, syscall.EINVAL) || len(st.Out) == 0 || !strings.HasSuffix(st.Out[0], "failed: Invalid argument") {
		t.Errorf("line %d: %s: %v, the kernel %q", st.Line, st.Command, err, st.Out)
	}
	logged := st.TargetLog("dust")
	var ce *stack.CtrError
	switch {
	case len(logged) == 0 && errors.As(err, &ce):
		t.Errorf("line %d: %s: refused with words %q, the kernel logged none", st.Line, st.Command, ce.Msg)
	case len(logged) == 0 && err != stack.ErrInvalid:
		t.Errorf("line %d: %s: %v, want stack.ErrInvalid", st.Line, st.Command, err)
	case len(logged) == 1 && (!errors.As(err, &ce) || ce.Msg != logged[0]):
		t.Errorf("line %d: %s: refused with %v, the kernel logged %q", st.Line, st.Command, err, logged[0])
	case len(logged) > 1:
		t.Errorf("line %d: the kernel logged %q", st.Line, logged)
	}
}
