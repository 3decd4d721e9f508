package flakey

import (
	"slices"
	"syscall"

	"github.com/daxstack/daxstack/internal/errno"
	"github.com/daxstack/daxstack/stack"
)

// ErrDown is the failure of a request in the down interval (error_reads,
// error_writes, or no feature). It matches syscall.EIO, the kernel's
// BLK_STS_IOERR.
var ErrDown = errno.New("flakey: device is down", syscall.EIO)

// The bits of the kernel's bi_opf that daxstack's requests have (the op
// in the low 8 bits, REQ_OP_*, then the flags; include/linux/blk_types.h).
const (
	reqOpRead    = 0
	reqOpWrite   = 1
	reqOpDiscard = 3
	reqFUA       = 1 << 17 // __REQ_FUA
	reqPreflush  = 1 << 18 // __REQ_PREFLUSH
)

// flagsOf returns the kernel's bi_opf for a request as dm-flakey would
// see it, for corrupt_bio_byte's flags mask (corrupted only when every
// bit of the mask is set): the op (read 0, write 1, discard 3; a
// write-zeroes reaches dm-flakey as the zero-page writes the kernel sends
// instead, and so reaches this target as writes, 1: see stack.Bio; a
// flush is an empty write with REQ_PREFLUSH), and REQ_FUA for a FUA
// write. daxstack's requests carry no other flag (REQ_SYNC,
// REQ_META, ...), so a mask with any other bit never matches. Only reads
// and writes are ever corrupted (they have data), so the useful masks
// are 0 (every request), 1 (writes: the op bit), and REQ_FUA, 131072
// (FUA writes).
func flagsOf(b *stack.Bio) uint32 {
	var f uint32
	switch b.Op {
	case stack.OpRead:
		f = reqOpRead
	case stack.OpDiscard:
		f = reqOpDiscard
	case stack.OpFlush:
		f = reqOpWrite | reqPreflush
	default:
		f = reqOpWrite
	}
	if b.FUA {
		f |= reqFUA
	}
	return f
}

func (c *config) flagsMatch(b *stack.Bio) bool { return flagsOf(b)&c.corruptFlags == c.corruptFlags }

// downRead marks, in a Bio's Private, a read MapIO sent on in the down
// interval for EndIO to corrupt.
type downRead struct{}

// MapIO is mainline's flakey_map. In the up interval every request goes
// on. In the down interval:
//
//   - a read fails with error_reads (or no feature); otherwise it goes on,
//     and EndIO corrupts it as the features say;
//   - every other request is a write to dm-flakey (writes, discards,
//     flushes): drop_writes completes it without sending it (Done: the
//     client sees success), error_writes fails it; otherwise a write is
//     corrupted on a copy when corrupt_bio_byte w matches its flags (the
//     Nth byte set to the value) or random_write_corrupt draws it (a
//     random byte set to a random value), and goes on; discards and
//     flushes go on untouched.
//
// A write-zeroes never reaches the target through the engine, which sends
// writes of zeros instead, 1 MiB at most each, as the kernel's block layer
// does for dm-flakey (see stack.Bio): those are corrupted like any write.
// One given to MapIO directly is a write with no data to corrupt.
func (f *flakey) MapIO(b *stack.Bio) (stack.Action, error) {
	if !f.isDown() {
		return stack.Remap, nil
	}
	hasData := b.Len > 0 && (b.Op == stack.OpRead || b.Op == stack.OpWrite)
	if b.Op == stack.OpRead {
		if f.errorReads {
			return stack.Kill, ErrDown
		}
		if hasData && (f.corruptByte > 0 || f.randomRead > 0) {
			b.Private = downRead{}
		}
		return stack.Remap, nil
	}
	switch {
	case f.dropWrites:
		return stack.Done, nil
	case f.errorWrites:
		return stack.Kill, ErrDown
	case !hasData:
		return stack.Remap, nil
	}
	fixed := f.corruptByte > 0 && f.corruptWrite && f.flagsMatch(b)
	random := false
	if f.randomWrite > 0 {
		f.mu.Lock()
		random = f.rnd.Uint64()%probabilityBase < uint64(f.randomWrite)
		f.mu.Unlock()
	}
	if !fixed && !random {
		return stack.Remap, nil
	}
	data := slices.Clone(b.Data)
	if fixed {
		corrupt(data, uint64(f.corruptByte-1), f.corruptValue)
	}
	if random {
		f.corruptRandom(data)
	}
	b.Data = data
	return stack.Remap, nil
}

// EndIO is mainline's flakey_end_io: a read that was mapped in the down
// interval (MapIO marked it in its Private) and succeeded is corrupted as
// the features say, its Nth byte when corrupt_bio_byte r matches its
// flags, and a random byte when random_read_corrupt draws it. The error is
// returned unchanged.
func (f *flakey) EndIO(b *stack.Bio, err error) error {
	_, down := b.Private.(downRead)
	if err != nil || !down || b.Op != stack.OpRead {
		return err
	}
	if f.corruptByte > 0 && !f.corruptWrite && f.flagsMatch(b) {
		corrupt(b.Data, uint64(f.corruptByte-1), f.corruptValue)
	}
	if f.randomRead > 0 {
		f.mu.Lock()
		draw := f.rnd.Uint64()%probabilityBase < uint64(f.randomRead)
		f.mu.Unlock()
		if draw {
			f.corruptRandom(b.Data)
		}
	}
	return nil
}

// corrupt sets byte i of data, if the request has one (corrupt_bio_common:
// a request shorter than the Nth byte is left alone).
func corrupt(data []byte, i uint64, v uint8) {
	if i < uint64(len(data)) {
		data[i] = v
	}
}

// corruptRandom is corrupt_bio_random: a random byte of the request set to
// a random value.
func (f *flakey) corruptRandom(data []byte) {
	if len(data) == 0 {
		return
	}
	f.mu.Lock()
	i := uint64(f.rnd.Uint32()) % uint64(len(data))
	v := uint8(f.rnd.Uint32())
	f.mu.Unlock()
	corrupt(data, i, v)
}
