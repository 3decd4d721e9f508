package stacktest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/daxstack/daxstack/stack"
)

// Options shape a random stack.
type Options struct {
	Leaves      int    // number of leaves (default 3)
	LeafSectors uint64 // size of each leaf (default 1024)
	Devices     int    // number of mapped devices (default 4)
	MaxSegments int    // most segments per table (default 6)
	ErrorTarget bool   // allow error segments
	ZeroTarget  bool   // allow zero segments
	DustTarget  bool   // allow dust segments (block sizes of 1 to 8 sectors)
	Sparse      bool   // leaves without memory (mapping only)
}

// Stack is a random stack: leaves, and mapped devices in creation order
// (each device only uses leaves and devices created before it).
type Stack struct {
	Pool    *stack.Pool
	Leaves  []*MemLeaf
	Devices []*stack.Device
	Tables  []string // the table text each device was loaded with
}

// Random builds a random stack of linear, striped (and optionally error,
// zero and dust) segments. Leaves are shared freely; depth comes from devices
// using earlier devices. The caller must have imported the targets.
func Random(rng *rand.Rand, o Options) (*Stack, error) {
	if o.Leaves == 0 {
		o.Leaves = 3
	}
	if o.LeafSectors == 0 {
		o.LeafSectors = 1024
	}
	if o.Devices == 0 {
		o.Devices = 4
	}
	if o.MaxSegments == 0 {
		o.MaxSegments = 6
	}
	s := &Stack{}
	for i := range o.Leaves {
		s.Leaves = append(s.Leaves, NewMemLeaf(fmt.Sprintf("/leaf/%d", i), fmt.Sprintf("leaf%d", i), o.LeafSectors, o.Sparse))
	}
	s.Pool = stack.NewPool(Opener(s.Leaves...))
	type child struct {
		ref  string
		size uint64
	}
	var children []child
	for _, l := range s.Leaves {
		children = append(children, child{l.Ref(), l.Size()})
	}
	for d := range o.Devices {
		name := fmt.Sprintf("dm%d", d)
		var lines []string
		var at uint64
		for range 1 + rng.IntN(o.MaxSegments) {
			kind := rng.IntN(10)
			switch {
			case kind < 4: // linear
				c := children[rng.IntN(len(children))]
				n := 1 + rng.Uint64N(min(64, c.size))
				off := rng.Uint64N(c.size - n + 1)
				lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, n, c.ref, off))
				at += n
			case kind < 8: // striped
				k := 1 + rng.Uint64N(4)
				chunk := 1 + rng.Uint64N(12)
				if rng.IntN(2) == 0 {
					chunk = 1 << rng.IntN(4)
				}
				per := 1 + rng.Uint64N(4) // chunks per stripe
				width := per * chunk
				var devs []string
				ok := true
				for range k {
					c := children[rng.IntN(len(children))]
					if c.size < width {
						ok = false
						break
					}
					devs = append(devs, fmt.Sprintf("%s %d", c.ref, rng.Uint64N(c.size-width+1)))
				}
				if !ok {
					continue
				}
				lines = append(lines, fmt.Sprintf("%d %d striped %d %d %s", at, width*k, k, chunk, strings.Join(devs, " ")))
				at += width * k
			case kind == 8 && o.ErrorTarget:
				n := 1 + rng.Uint64N(16)
				if rng.IntN(2) == 0 {
					c := children[rng.IntN(len(children))]
					if c.size >= n {
						lines = append(lines, fmt.Sprintf("%d %d error %s %d", at, n, c.ref, rng.Uint64N(c.size-n+1)))
						at += n
						continue
					}
				}
				lines = append(lines, fmt.Sprintf("%d %d error", at, n))
				at += n
			case kind == 9 && o.ZeroTarget:
				n := 1 + rng.Uint64N(16)
				lines = append(lines, fmt.Sprintf("%d %d zero", at, n))
				at += n
			}
			if o.DustTarget && rng.IntN(3) == 0 {
				c := children[rng.IntN(len(children))]
				spb := uint64(1) << rng.IntN(4)
				if c.size < spb {
					continue
				}
				n := spb + rng.Uint64N(min(64, c.size)-spb+1)
				off := rng.Uint64N(c.size - n + 1)
				lines = append(lines, fmt.Sprintf("%d %d dust %s %d %d", at, n, c.ref, off, spb*stack.SectorSize))
				at += n
			}
		}
		if len(lines) == 0 {
			c := children[rng.IntN(len(children))]
			lines = append(lines, fmt.Sprintf("0 %d linear %s 0", c.size, c.ref))
			at = c.size
		}
		text := strings.Join(lines, "\n")
		dev, err := s.Pool.Create(name, "")
		if err != nil {
			return nil, err
		}
		if err := s.Pool.LoadText(dev, text, stack.SourceInline); err != nil {
			return nil, fmt.Errorf("table for %s:\n%s\n%w", name, text, err)
		}
		if err := s.Pool.Resume(dev); err != nil {
			return nil, err
		}
		s.Devices = append(s.Devices, dev)
		s.Tables = append(s.Tables, text)
		children = append(children, child{name, at})
	}
	return s, nil
}
