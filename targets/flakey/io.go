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
// write-zeroes reaches dm-flakey as the zero-page write the kernel sends
// instead, 1; a flush is an empty write with REQ_PREFLUSH), and REQ_FUA
// for a FUA write. daxstack's requests carry no other flag (REQ_SYNC,
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

// maxZeroesCopy bounds the write-zeroes request MapIO turns into a write
// of zeros to corrupt it: the kernel never sends dm-flakey a write-zeroes
// (it does not take them), the block layer writes zeroed pages instead, in
// requests of at most 1280 KiB; the engine's requests move at most 4 MiB.
const maxZeroesCopy = 4 << 20

// MapIO is mainline's flakey_map. In the up interval every request goes
// on. In the down interval:
//
//   - a read fails with error_reads (or no feature); otherwise it goes on,
//     and EndIO corrupts it as the features say;
//   - every other request is a write to dm-flakey (writes, write-zeroes,
//     discards, flushes): drop_writes completes it without sending it
//     (Done: the client sees success), error_writes fails it; otherwise a
//     write with data (write, write-zeroes) is corrupted on a copy when
//     corrupt_bio_byte w matches its flags (the Nth byte set to the
//     value) or random_write_corrupt draws it (a random byte set to a
//     random value), and goes on; discards and flushes go on untouched.
//
// A corrupted write-zeroes is sent as a write of zeros with the byte
// corrupted (b.Op becomes OpWrite, b.Data the zeros), which is what the
// kernel's zero-page fallback writes; one over maxZeroesCopy bytes is sent
// uncorrupted.
func (f *flakey) MapIO(b *stack.Bio) (stack.Action, error) {
	if !f.isDown() {
		return stack.Remap, nil
	}
	hasData := b.Len > 0 && (b.Op == stack.OpRead || b.Op == stack.OpWrite || b.Op == stack.OpWriteZeroes)
	if b.Op == stack.OpRead {
		if f.errorReads {
			return stack.Kill, ErrDown
		}
		if hasData && (f.corruptByte > 0 || f.randomRead > 0) {
			f.mu.Lock()
			f.reads[b] = struct{}{}
			f.mu.Unlock()
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
	var data []byte
	switch {
	case b.Op == stack.OpWrite:
		data = slices.Clone(b.Data)
	case b.Len <= maxZeroesCopy:
		data = make([]byte, b.Len)
	default:
		return stack.Remap, nil
	}
	if fixed {
		corrupt(data, uint64(f.corruptByte-1), f.corruptValue)
	}
	if random {
		f.corruptRandom(data)
	}
	b.Op, b.Data = stack.OpWrite, data
	return stack.Remap, nil
}

// EndIO is mainline's flakey_end_io: a read that was mapped in the down
// interval and succeeded is corrupted as the features say, its Nth byte
// when corrupt_bio_byte r matches its flags, and a random byte when
// random_read_corrupt draws it. The error is returned unchanged.
func (f *flakey) EndIO(b *stack.Bio, err error) error {
	f.mu.Lock()
	_, down := f.reads[b]
	delete(f.reads, b)
	f.mu.Unlock()
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
