package flakey

import (
	"bytes"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
)

// configOf is what a table builds, the device by its reference (each
// Build of an unloaded table opens the leaves anew).
func configOf(f *flakey) (config, string) {
	c := f.config
	c.dev = nil
	return c, f.dev.Ref()
}

// FuzzNew: any parameters build or are refused with a table error, never
// a panic; an accepted table prints back to a table that builds the same
// target.
func FuzzNew(f *testing.F) {
	for _, s := range []string{
		"/dev/ram0 0 60 0", "/dev/ram0 0 0 180 1 drop_writes", "/dev/ram0 0 1 1 5 corrupt_bio_byte 32 r 1 0",
		"/dev/ram0 8 3 4 6 error_reads corrupt_bio_byte 224 w 0 32", "/dev/ram0 0 1 1 4 random_read_corrupt 1 random_write_corrupt 2",
		"/dev/ram0 0 4294967295 1", "/dev/ram0 0 1 1 2 random_read_corrupt 0", "/dev/ram0 0 1 1 11 a b c d e f g h i j k",
		"/dev/ram0 0 1 1 1 drop_writes extra", `/dev/ram0 0 \ 1 1`,
	} {
		f.Add(uint16(1024), s)
	}
	rd := transcript.NewRamdisks(true)
	p := rd.Pool()
	dev, err := p.Create("top", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, length uint16, params string) {
		tab, err := p.Build(dev, []stack.Line{{No: 1, Len: uint64(length), Type: "flakey", Params: params}})
		if err != nil {
			if _, ok := err.(*stack.TableError); !ok {
				t.Fatalf("%q: error %T %v", params, err, err)
			}
			return
		}
		first := tab.Segments()[0].Target.(*flakey)
		printed := tab.Lines()[0]
		lines, err := stack.ParseText(printed, stack.SourceInline)
		if err != nil {
			t.Fatalf("printed %q does not parse: %v", printed, err)
		}
		again, err := p.Build(dev, lines)
		if err != nil {
			t.Fatalf("%q printed as %q, which is refused: %v", params, printed, err)
		}
		second := again.Segments()[0].Target.(*flakey)
		c1, d1 := configOf(first)
		c2, d2 := configOf(second)
		if c1 != c2 || d1 != d2 || again.Lines()[0] != printed {
			t.Fatalf("%q printed as %q builds another target:\n%+v\n%+v", params, printed, c1, c2)
		}
		if p, err := first.Split(0, uint64(length)); err != nil || p != first.Table() {
			t.Fatalf("Split of the whole %q, table %q", p, first.Table())
		}
	})
}

// FuzzRestore: any bytes are read or refused without a panic; a read
// state is this boot's or was replaced by a fresh start.
func FuzzRestore(f *testing.F) {
	e := newEnv(1)
	good := e.build(f, "f", "0 8 flakey /dev/ram0 0 1 1").State()
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append(bytes.Clone(good[:9]), 3, 'a', 'b', 'c'))
	f.Fuzz(func(t *testing.T, state []byte) {
		fl := e.build(t, "g", "0 8 flakey /dev/ram0 0 1 1")
		defer func() {
			d, _ := e.pool.Device("g")
			e.pool.Remove(d)
		}()
		if fl.Restore(state) != nil {
			return
		}
		s := fl.State()
		if fl.bootID != e.clock.BootID() || (fl.began != e.clock.Boottime() && !bytes.Equal(s, state)) {
			t.Fatalf("%v restored as %v", state, s)
		}
		fl.isDown()
	})
}
