package dust

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/targets/internal/kscan"
)

// Message is dust_message: the kernel's dispatch on the number of words,
// its replies (the result buffer dmsetup prints) and its refusals. A
// refusal carries EINVAL and, as its message, the words the kernel logs
// (stack.CtrError's Msg); where the kernel refuses without a word (a
// block number that does not parse, or, in quiet mode, a duplicate add or
// the removal of an absent block), the error is plain stack.ErrInvalid.
// Words are matched without regard to ASCII case.
//
//	enable | disable | quiet | countbadblocks | clearbadblocks | listbadblocks
//	addbadblock <block> [<write-fail count 0-255>] | removebadblock <block> | queryblock <block>
//
// A block is valid up to and including the underlying device's size in
// blocks (the kernel's "block > size" check, so one past the last block
// is accepted).
func (d *dust) Message(args []string) (string, error) {
	switch len(args) {
	case 1:
		return d.message1(args[0])
	case 2, 3:
		block, ok := kscan.Uint64(args[1])
		if !ok {
			return "", stack.ErrInvalid
		}
		var wrfail uint8
		if len(args) == 3 {
			n, ok := kscan.Uint32(args[2])
			if !ok {
				return "", stack.ErrInvalid
			}
			if n > 255 {
				return "", refuse("selected write fail count out of range")
			}
			wrfail = uint8(n)
		}
		if block > d.dev.Size()>>d.shift {
			return "", refuse("selected block value out of range")
		}
		switch {
		case matches(args[0], "addbadblock"):
			return "", d.add(block, wrfail)
		case len(args) == 2 && matches(args[0], "removebadblock"):
			return "", d.remove(block)
		case len(args) == 2 && matches(args[0], "queryblock"):
			return d.query(block), nil
		}
		return "", unrecognized(args[0])
	}
	return "", refuse(fmt.Sprintf("invalid number of arguments '%d'", len(args)))
}

func (d *dust) message1(word string) (string, error) {
	switch {
	case matches(word, "addbadblock"), matches(word, "removebadblock"), matches(word, "queryblock"):
		return "", refuse(word + " requires an additional argument")
	case matches(word, "disable"):
		d.mu.Lock()
		d.enabled = false
		d.mu.Unlock()
		return "", nil
	case matches(word, "enable"):
		d.mu.Lock()
		d.enabled = true
		d.mu.Unlock()
		return "", nil
	case matches(word, "countbadblocks"):
		d.mu.Lock()
		defer d.mu.Unlock()
		return fmt.Sprintf("countbadblocks: %d badblock(s) found", len(d.blocks)), nil
	case matches(word, "clearbadblocks"):
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.blocks) == 0 {
			return "dust_clear_badblocks: no badblocks found", nil
		}
		d.blocks = map[uint64]uint8{}
		return "dust_clear_badblocks: badblocks cleared", nil
	case matches(word, "quiet"):
		d.mu.Lock()
		d.quiet = !d.quiet
		d.mu.Unlock()
		return "", nil
	case matches(word, "listbadblocks"):
		return d.list(), nil
	}
	return "", unrecognized(word)
}

func (d *dust) add(block uint64, wrfail uint8) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.blocks[block]; dup {
		return d.quietRefuse(fmt.Sprintf("dust_add_block: block %d already in badblocklist", block))
	}
	d.blocks[block] = wrfail
	return nil
}

func (d *dust) remove(block uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.blocks[block]; !ok {
		return d.quietRefuse(fmt.Sprintf("dust_remove_block: block %d not found in badblocklist", block))
	}
	delete(d.blocks, block)
	return nil
}

func (d *dust) query(block uint64) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.blocks[block]; ok {
		return fmt.Sprintf("dust_query_block: block %d found in badblocklist", block)
	}
	return fmt.Sprintf("dust_query_block: block %d not found in badblocklist", block)
}

// list is dust_list_badblocks: one "%llu\n" per block in ascending order,
// or "No blocks in badblocklist".
func (d *dust) list() string {
	d.mu.Lock()
	blocks := make([]uint64, 0, len(d.blocks))
	for b := range d.blocks {
		blocks = append(blocks, b)
	}
	d.mu.Unlock()
	if len(blocks) == 0 {
		return "No blocks in badblocklist"
	}
	slices.Sort(blocks)
	var sb strings.Builder
	for _, b := range blocks {
		sb.WriteString(strconv.FormatUint(b, 10))
		sb.WriteByte('\n')
	}
	return sb.String()
}

// refuse is a refused message with the kernel's log words.
func refuse(words string) error { return stack.Errorf(words, stack.ErrInvalid) }

func unrecognized(word string) error {
	return refuse("unrecognized message '" + word + "' received")
}

// quietRefuse is a refusal whose words the kernel logs only when not in
// quiet mode. d.mu is held.
func (d *dust) quietRefuse(words string) error {
	if d.quiet {
		return stack.ErrInvalid
	}
	return refuse(words)
}
