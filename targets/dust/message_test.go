package dust

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/stack"
)

// TestMessageWords covers what the transcript does not: the kernel's
// number parsing (sscanf: values wrap, leading white space is skipped),
// its dispatch on the word count, and case. Expectations follow
// dm-dust.c's dust_message.
func TestMessageWords(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		reply string
		words string // the refusal's words; "-" for a refusal without words
		list  string // listbadblocks afterwards, when checked
	}{
		{name: "mixed case", args: []string{"AddBadBlock", "5"}, list: "5\n"},
		{name: "a block past 2^64 wraps", args: []string{"addbadblock", "18446744073709551621"}, list: "5\n"},
		{name: "a count past 2^32 wraps", args: []string{"addbadblock", "5", "4294967298"}, list: "5\n"},
		{name: "leading white space", args: []string{"addbadblock", " \t5"}, list: "5\n"},
		{name: "a sign", args: []string{"addbadblock", "+5"}, words: "-"},
		{name: "trailing garbage", args: []string{"addbadblock", "5 "}, words: "-"},
		{name: "count unparsable", args: []string{"addbadblock", "5", "x"}, words: "-"},
		{name: "count checked before the block", args: []string{"addbadblock", "999999", "256"}, words: "selected write fail count out of range"},
		{name: "block checked before the word", args: []string{"frob", "999999"}, words: "selected block value out of range"},
		{name: "a one-word message with an argument", args: []string{"enable", "5"}, words: "unrecognized message 'enable' received"},
		{name: "three words, not addbadblock", args: []string{"removebadblock", "5", "0"}, words: "unrecognized message 'removebadblock' received"},
		{name: "the word as given", args: []string{"QueryBlock"}, words: "QueryBlock requires an additional argument"},
		{name: "no words", args: nil, words: "invalid number of arguments '0'"},
		{name: "five words", args: []string{"a", "b", "c", "d", "e"}, words: "invalid number of arguments '5'"},
		{name: "the last block (size / blocks) is accepted", args: []string{"addbadblock", "2048"}, list: "2048\n"},
		{name: "one more is not", args: []string{"addbadblock", "2049"}, words: "selected block value out of range"},
		{name: "list of none", args: []string{"listbadblocks"}, reply: "No blocks in badblocklist"},
		{name: "count of none", args: []string{"COUNTBADBLOCKS"}, reply: "countbadblocks: 0 badblock(s) found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := build(t, "0 16384 dust /dev/ram1 0 4096")
			reply, err := d.Message(tc.args)
			switch {
			case tc.words == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.words == "" && reply != tc.reply:
				t.Errorf("reply %q, want %q", reply, tc.reply)
			case tc.words == "-" && err != stack.ErrInvalid:
				t.Errorf("%q, %v; want a refusal without words", reply, err)
			case tc.words != "" && tc.words != "-":
				var ce *stack.CtrError
				if !errors.As(err, &ce) || ce.Msg != tc.words || !errors.Is(err, syscall.EINVAL) {
					t.Errorf("%q, %v; want refused with %q", reply, err, tc.words)
				}
			}
			if tc.list != "" {
				if got := msg(t, d, "listbadblocks"); got != tc.list {
					t.Errorf("listbadblocks %q, want %q", got, tc.list)
				}
			}
		})
	}
}

// TestQuiet: quiet mode silences the words of a duplicate add and of the
// removal of an absent block (they are logged only when verbose), not the
// refusals themselves; the quiet message toggles.
func TestQuiet(t *testing.T) {
	d, _ := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "addbadblock", "1")
	msg(t, d, "quiet")
	if s := d.Status(); s != "1:0 bypass quiet" {
		t.Errorf("status %q", s)
	}
	for _, args := range [][]string{{"addbadblock", "1"}, {"removebadblock", "2"}} {
		if _, err := d.Message(args); err != stack.ErrInvalid {
			t.Errorf("quiet %q: %v, want stack.ErrInvalid", args, err)
		}
	}
	var ce *stack.CtrError
	if _, err := d.Message([]string{"addbadblock", "99999"}); !errors.As(err, &ce) || ce.Msg != "selected block value out of range" {
		t.Errorf("quiet out of range: %v", err)
	}
	msg(t, d, "quiet")
	if _, err := d.Message([]string{"addbadblock", "1"}); !errors.As(err, &ce) || ce.Msg != "dust_add_block: block 1 already in badblocklist" {
		t.Errorf("verbose again: %v", err)
	}
}

// TestRefusedMessagesChangeNothing: a refused message leaves the saved
// state byte for byte as it was.
func TestRefusedMessagesChangeNothing(t *testing.T) {
	d, _ := build(t, "0 16384 dust /dev/ram0 0 512")
	msg(t, d, "addbadblock", "7", "3")
	msg(t, d, "enable")
	before := d.State()
	for _, args := range [][]string{
		{"addbadblock", "7"}, {"removebadblock", "8"}, {"addbadblock", "16385"}, {"addbadblock", "9", "256"},
		{"addbadblock"}, {"frobnicate"}, {"queryblock", "7", "1"}, {"addbadblock", "x"}, {"a", "b", "c", "d"}, {},
	} {
		if _, err := d.Message(args); err == nil {
			t.Errorf("%q accepted", args)
		}
		if after := d.State(); !bytes.Equal(after, before) {
			t.Errorf("refused %q changed the state", args)
			before = after
		}
	}
}

func TestStatusAndTable(t *testing.T) {
	d, _ := build(t, "0 1024 dust /dev/ram1 8 4096")
	if got := d.Table(); got != "1:1 8 4096" {
		t.Errorf("Table() = %q", got)
	}
	for _, step := range []struct{ msg, status string }{
		{"", "1:1 bypass verbose"}, {"enable", "1:1 fail_read_on_bad_block verbose"},
		{"quiet", "1:1 fail_read_on_bad_block quiet"}, {"disable", "1:1 bypass quiet"},
	} {
		if step.msg != "" {
			msg(t, d, step.msg)
		}
		if got := d.Status(); got != step.status {
			t.Errorf("after %q: Status() = %q, want %q", step.msg, got, step.status)
		}
	}
	if got := msg(t, d, "listbadblocks"); !strings.HasPrefix(got, "No blocks") {
		t.Errorf("list %q", got)
	}
}
