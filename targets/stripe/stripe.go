// Package stripe is the striped target: a segment spreads over several
// child devices in chunks, round robin, as the kernel's dm-stripe.
//
//	<start> <length> striped <#stripes> <chunk> (<device> <offset>)+
//
// Chunk k of the segment (k = offset / chunk) lives on stripe k % #stripes,
// at chunk k / #stripes of that stripe's range. Each stripe uses
// length / #stripes sectors of its device from its offset. Any non-zero chunk
// size is accepted; a power of two only takes a faster path, as in the
// kernel. Importing the package registers the target with stack.
package stripe

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

func init() {
	stack.Register(stack.TargetType{Name: "striped", Version: [3]uint32{1, 6, 0}, New: New})
}

type stripe struct {
	dev    *stack.Dev
	start  uint64       // physical_start
	errors atomic.Int64 // I/O errors seen on this stripe (status A/D)
}

type striped struct {
	stripes    []stripe
	k          uint64 // number of stripes
	chunk      uint64 // chunk size in sectors
	width      uint64 // sectors each stripe uses: len / k
	chunkShift int    // log2(chunk), or -1 when chunk is not a power of two
	kShift     int    // log2(k), or -1
}

// New is the constructor, with the kernel's checks in the kernel's order.
func New(ti *stack.TargetInfo, args []string) (stack.Target, error) {
	if len(args) < 2 {
		return nil, stack.Errorf("Not enough arguments", nil)
	}
	k, ok := stack.ParseUint32(args[0])
	if !ok || k == 0 {
		return nil, stack.Errorf("Invalid stripe count", nil)
	}
	chunk, ok := stack.ParseUint32(args[1])
	if !ok || chunk == 0 {
		return nil, stack.Errorf("Invalid chunk_size", nil)
	}
	if ti.Len%uint64(k) != 0 {
		return nil, stack.Errorf("Target length not divisible by number of stripes", nil)
	}
	width := ti.Len / uint64(k)
	if width%uint64(chunk) != 0 {
		return nil, stack.Errorf("Target length not divisible by chunk size", nil)
	}
	// The kernel compares argc with 2 + 2*stripes in 32-bit arithmetic; a
	// stripe count large enough to wrap it passes, and the allocation that
	// follows fails.
	if uint32(len(args)) != 2+2*k {
		return nil, stack.Errorf("Not enough destinations specified", nil)
	}
	if uint64(k) > uint64(len(args)) {
		return nil, stack.Errorf("Memory allocation for striped context failed", syscall.ENOMEM)
	}
	ti.SetMaxIOLen(uint64(chunk)) // I/O is split at chunk boundaries, as the kernel's
	s := &striped{
		stripes:    make([]stripe, k),
		k:          uint64(k),
		chunk:      uint64(chunk),
		width:      width,
		chunkShift: log2(uint64(chunk)),
		kShift:     log2(uint64(k)),
	}
	for i := range s.stripes {
		a := args[2+2*i:]
		start, ok := stack.ParseSector(a[1])
		if !ok {
			return nil, stack.Errorf("Couldn't parse stripe destination", fmt.Errorf("%w: invalid offset %q of stripe %d", stack.ErrInvalid, a[1], i))
		}
		dev, err := ti.GetDevice(a[0])
		if err != nil {
			return nil, stack.Errorf("Couldn't parse stripe destination", err)
		}
		s.stripes[i].dev, s.stripes[i].start = dev, start
	}
	return s, nil
}

// Split cuts the segment at whole stripe rows (#stripes*chunk sectors):
// such a piece is a striped segment whose stripes start off/#stripes
// further on. Any other cut would change the mapping, so it is refused.
func (s *striped) Split(off, n uint64) (string, error) {
	row := s.k * s.chunk
	if off%row != 0 || n%row != 0 {
		return "", fmt.Errorf("a striped segment is cut only at whole stripe rows (%d stripes of %d sectors: every %d sectors from its start)", s.k, s.chunk, row)
	}
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.k, 10) + " " + strconv.FormatUint(s.chunk, 10))
	for i := range s.stripes {
		b.WriteString(" " + s.stripes[i].dev.Ref() + " " + strconv.FormatUint(s.stripes[i].start+off/s.k, 10))
	}
	return b.String(), nil
}

// log2 returns log2(v) for a power of two, else -1.
func log2(v uint64) int {
	if v&(v-1) != 0 {
		return -1
	}
	return bits.TrailingZeros64(v)
}

// locate is the kernel's stripe_map_sector: the stripe holding segment
// offset off, and the offset within that stripe's range.
func (s *striped) locate(off uint64) (stripeIdx, result, chunkOff uint64) {
	var chunk uint64
	if s.chunkShift >= 0 {
		chunk, chunkOff = off>>s.chunkShift, off&(s.chunk-1)
	} else {
		chunk, chunkOff = off/s.chunk, off%s.chunk
	}
	if s.kShift >= 0 {
		stripeIdx, chunk = chunk&(s.k-1), chunk>>s.kShift
	} else {
		stripeIdx, chunk = chunk%s.k, chunk/s.k
	}
	if s.chunkShift >= 0 {
		chunk <<= s.chunkShift
	} else {
		chunk *= s.chunk
	}
	return stripeIdx, chunk + chunkOff, chunkOff
}

// Map returns the stripe device and sector; the run ends at the chunk end.
func (s *striped) Map(off uint64) (stack.Mapping, error) {
	i, r, co := s.locate(off)
	st := &s.stripes[i]
	return stack.Mapping{Dev: st.dev, Sector: st.start + r, Run: s.chunk - co}, nil
}

// EndIO counts an error against the first stripe on the failing device, as
// stripe_end_io does (it matches the device, so a device used by two
// stripes is charged to the first). Requests are split at chunks
// (SetMaxIOLen), so a request's first sector names its stripe.
func (s *striped) EndIO(b *stack.Bio, err error) error {
	if err == nil {
		return nil
	}
	i, _, _ := s.locate(b.Sector())
	dev := s.stripes[i].dev
	for j := range s.stripes {
		if s.stripes[j].dev == dev {
			s.stripes[j].errors.Add(1)
			break
		}
	}
	return err
}

// EndIOErrorsOnly marks EndIO as needing failures only (stack.ErrorEndIOer):
// striped stays on the I/O path's fast path.
func (s *striped) EndIOErrorsOnly() {}

func (s *striped) Areas() []stack.Area {
	out := make([]stack.Area, len(s.stripes))
	for i := range s.stripes {
		out[i] = stack.Area{Dev: s.stripes[i].dev, Start: s.stripes[i].start, Len: s.width}
	}
	return out
}

// Table prints "<#stripes> <chunk> (<device> <offset>)+".
func (s *striped) Table() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.k, 10) + " " + strconv.FormatUint(s.chunk, 10))
	for i := range s.stripes {
		b.WriteString(" " + s.stripes[i].dev.Ref() + " " + strconv.FormatUint(s.stripes[i].start, 10))
	}
	return b.String()
}

// Status prints "<#stripes> (<device> )+1 <A|D per stripe>", e.g.
// "2 259:1 259:0 1 AA"; D marks a stripe that has seen an I/O error, as in
// the kernel, or whose leaf is lost (every I/O to it would fail).
func (s *striped) Status() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.k, 10) + " ")
	for i := range s.stripes {
		b.WriteString(s.stripes[i].dev.Ref() + " ")
	}
	b.WriteString("1 ")
	for i := range s.stripes {
		if s.stripes[i].errors.Load() > 0 || lost(s.stripes[i].dev) {
			b.WriteByte('D')
		} else {
			b.WriteByte('A')
		}
	}
	return b.String()
}

// lost reports whether dev is a leaf that says it is lost.
func lost(dev *stack.Dev) bool {
	l, ok := dev.Leaf().(interface{ Lost() bool })
	return ok && l.Lost()
}

// Rmap inverts the stripe mapping for every stripe on child. A stripe's
// sector y (relative to its offset) is segment sector
// (y/chunk * #stripes + i) * chunk + y%chunk: whole chunks of the stripe
// become a run with stride #stripes*chunk, so a whole stripe, or a strided
// run whose stride is a multiple of the chunk, stays a handful of runs.
func (s *striped) Rmap(child *stack.Dev, in extent.Set) extent.Set {
	var out []extent.Run
	for i := range s.stripes {
		st := &s.stripes[i]
		if st.dev != child {
			continue
		}
		part := in.Clip(st.start, st.start+s.width)
		for _, r := range part.Runs() {
			r.Start -= st.start
			out = s.rmapRun(uint64(i), r, out)
		}
	}
	return extent.Disjoint(out...)
}

// rmapExtent appends the segment sectors of stripe i's sectors [y, y+n).
func (s *striped) rmapExtent(i, y, n uint64, out []extent.Run) []extent.Run {
	c0, o0 := y/s.chunk, y%s.chunk
	c1 := (y + n - 1) / s.chunk
	at := func(c uint64) uint64 { return (c*s.k + i) * s.chunk }
	if c0 == c1 {
		return append(out, extent.ExtentRun(extent.Extent{Start: at(c0) + o0, Len: n}))
	}
	out = append(out, extent.ExtentRun(extent.Extent{Start: at(c0) + o0, Len: s.chunk - o0}))
	if c1 > c0+1 {
		out = append(out, runOf(at(c0+1), s.chunk, s.k*s.chunk, c1-c0-1))
	}
	return append(out, extent.ExtentRun(extent.Extent{Start: at(c1), Len: y + n - c1*s.chunk}))
}

// runOf builds a run, folding a stride equal to the length into one extent.
func runOf(start, length, stride, count uint64) extent.Run {
	if count == 1 {
		return extent.Run{Start: start, Len: length, Count: 1}
	}
	if stride == length {
		return extent.Run{Start: start, Len: length * count, Count: 1}
	}
	return extent.Run{Start: start, Len: length, Stride: stride, Count: count}
}

// rmapRun appends the segment sectors of a run of stripe i's sectors.
//
// The offset of element j within its chunk, (y0 + j*S) % chunk, repeats
// every P = chunk / gcd(S, chunk) elements, and element j+P lands exactly
// P*S*#stripes sectors after element j. So the elements fall into P classes;
// the image of a class's first element, repeated with that stride, is the
// image of the class. When P is not smaller than the element count, the
// elements are mapped one by one.
func (s *striped) rmapRun(i uint64, r extent.Run, out []extent.Run) []extent.Run {
	if r.Count == 1 {
		return s.rmapExtent(i, r.Start, r.Len, out)
	}
	period := s.chunk / gcd(r.Stride%s.chunk, s.chunk)
	if period >= r.Count {
		for j := uint64(0); j < r.Count; j++ {
			out = s.rmapExtent(i, r.Start+j*r.Stride, r.Len, out)
		}
		return out
	}
	step := period * r.Stride * s.k // parent distance between elements j and j+period
	var img []extent.Run
	for q := uint64(0); q < period; q++ {
		count := (r.Count - q + period - 1) / period
		img = s.rmapExtent(i, r.Start+q*r.Stride, r.Len, img[:0])
		for _, e := range img {
			if e.Count == 1 {
				out = append(out, runOf(e.Start, e.Len, step, count))
				continue
			}
			// A run of whole chunks repeated: a lattice of e.Count x count
			// copies. Write it as runs along its shorter side.
			if e.Count <= count {
				for c := uint64(0); c < e.Count; c++ {
					out = append(out, runOf(e.Start+c*e.Stride, e.Len, step, count))
				}
			} else {
				for c := uint64(0); c < count; c++ {
					out = append(out, runOf(e.Start+c*step, e.Len, e.Stride, e.Count))
				}
			}
		}
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
