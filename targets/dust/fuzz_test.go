package dust

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
)

// config is what a table builds: everything but the state (the device by
// its reference: each Build of an unloaded table opens the leaves anew).
func config(d *dust) [6]any {
	return [6]any{d.dev.Ref(), d.start, d.len, d.begin, d.blksz, d.shift}
}

// FuzzNew: any parameters either build or are refused with a table error,
// never a panic; an accepted table prints back to a table that builds the
// same target.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"/dev/ram0 0 512", "/dev/ram1 8 4096", "/dev/ram0 0", "/dev/ram0 x 512", "/dev/ram0 0 1000", "1:0 0 2097152", "/dev/ram0 0 +512\n", "/dev/nonexist 0 512", `/dev/ram0 0 5\ 12`} {
		f.Add(uint16(16384), s)
	}
	p := transcript.NewRamdisks(true).Pool()
	dev, err := p.Create("top", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, length uint16, params string) {
		line := stack.Line{No: 1, Start: 0, Len: uint64(length), Type: "dust", Params: params}
		tab, err := p.Build(dev, []stack.Line{line})
		if err != nil {
			if _, ok := err.(*stack.TableError); !ok {
				t.Fatalf("%q: error %T %v", params, err, err)
			}
			return
		}
		first := tab.Segments()[0].Target.(*dust)
		printed := tab.Lines()[0]
		lines, err := stack.ParseText(printed, stack.SourceInline)
		if err != nil {
			t.Fatalf("printed %q does not parse: %v", printed, err)
		}
		again, err := p.Build(dev, lines)
		if err != nil {
			t.Fatalf("%q printed as %q, which is refused: %v", params, printed, err)
		}
		second := again.Segments()[0].Target.(*dust)
		if config(first) != config(second) || again.Lines()[0] != printed {
			t.Fatalf("%q printed as %q builds another target: %v vs %v", params, printed, config(first), config(second))
		}
	})
}

// FuzzMessage: any sequence of messages (separated by ';', split as the
// kernel splits them) never panics; a refused message changes nothing;
// countbadblocks agrees with listbadblocks; the state survives a round
// trip.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{
		"addbadblock 60;addbadblock 60;queryblock 60;countbadblocks;listbadblocks",
		"addbadblock 62 2;enable;quiet;removebadblock 62;clearbadblocks",
		"addbadblock 18446744073709551616 4294967296;ENABLE;disable",
		"addbadblock;queryblock 1 2;addbadblock 1 2 3;frobnicate",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		d, _ := build(t, "0 16384 dust /dev/ram1 0 1024")
		for _, m := range strings.Split(script, ";") {
			before := d.State()
			_, err := d.Message(stack.SplitArgs(m))
			if err != nil && !bytes.Equal(before, d.State()) {
				t.Fatalf("refused %q changed the state", m)
			}
		}
		count := msg(t, d, "countbadblocks")
		list := msg(t, d, "listbadblocks")
		n := strings.Count(list, "\n")
		if want := "countbadblocks: " + strconv.Itoa(n) + " badblock(s) found"; count != want {
			t.Fatalf("%q with a list of %d", count, n)
		}
		again, _ := build(t, "0 16384 dust /dev/ram1 0 1024")
		if err := again.Restore(d.State()); err != nil || !bytes.Equal(again.State(), d.State()) {
			t.Fatalf("state round trip: %v", err)
		}
	})
}

// FuzzRestore: any bytes are read or refused without a panic; a read
// state encodes to one that reads back to itself.
func FuzzRestore(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 1, 4, 0})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 3, 1, 0x80, 0x01, 9})
	f.Fuzz(func(t *testing.T, state []byte) {
		d, _ := build(t, "0 16384 dust /dev/ram0 0 4096")
		if d.Restore(state) != nil {
			return
		}
		s := d.State()
		d2, _ := build(t, "0 16384 dust /dev/ram0 0 4096")
		if err := d2.Restore(s); err != nil || !bytes.Equal(d2.State(), s) {
			t.Fatalf("%v read, encoded as %v, which reads back as %v (%v)", state, s, d2.State(), err)
		}
		d.Failing()
	})
}
