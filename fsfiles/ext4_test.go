package fsfiles

import (
	"errors"
	"testing"
)

// ext4NodeBuf encodes an extent-tree node of the given depth with leaf
// extents (depth 0) or children.
func ext4NodeBuf(size, depth int, exts []ext4Extent, kids []uint64) []byte {
	b := make([]byte, size)
	le.PutUint16(b[0:], ext4ExtentMagic)
	n := len(exts) + len(kids)
	le.PutUint16(b[2:], uint16(n))
	le.PutUint16(b[4:], uint16((size-12)/12))
	le.PutUint16(b[6:], uint16(depth))
	for i, e := range exts {
		x := b[12+12*i:]
		le.PutUint32(x[0:], e.Block)
		le.PutUint16(x[4:], uint16(e.Len))
		le.PutUint16(x[6:], uint16(e.Start>>32))
		le.PutUint32(x[8:], uint32(e.Start))
	}
	for i, k := range kids {
		x := b[12+12*i:]
		le.PutUint32(x[4:], uint32(k))
		le.PutUint16(x[8:], uint16(k>>32))
	}
	return b
}

func TestParseExt4Node(t *testing.T) {
	exts := []ext4Extent{{0, 8, 1000}, {8, 32768 + 4, 1 << 33}}
	n, err := parseExt4Node(ext4NodeBuf(60, 0, exts, nil))
	if err != nil || len(n.Extents) != 2 || n.Extents[1].Len != 4 || n.Extents[1].Start != 1<<33 || n.Extents[0] != exts[0] {
		t.Fatalf("leaf: %v %+v", err, n)
	}
	n, err = parseExt4Node(ext4NodeBuf(60, 2, nil, []uint64{77, 1<<40 + 5}))
	if err != nil || n.Depth != 2 || len(n.Children) != 2 || n.Children[1] != 1<<40+5 {
		t.Fatalf("index: %v %+v", err, n)
	}
	b := ext4NodeBuf(60, 0, exts, nil)
	le.PutUint16(b[4:], 10) // more entries than fit in 60 bytes
	if _, err := parseExt4Node(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("max too large: %v", err)
	}
	if _, err := parseExt4Node(ext4NodeBuf(60, 6, nil, nil)); !errors.Is(err, ErrMalformed) {
		t.Errorf("depth 6: %v", err)
	}
}

// memDev is a device in memory for ext4Tree.
type memDev []byte

func (m memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("out of range")
	}
	return copy(p, m[off:]), nil
}

func TestExt4Tree(t *testing.T) {
	sb := ext4Super{BlockSize: 1024, BlocksCount: 64}
	dev := make(memDev, 64*1024)
	// Root (in the inode) -> index block 10 -> leaves 20 and 21.
	copy(dev[10*1024:], ext4NodeBuf(1024, 1, nil, []uint64{20, 21}))
	copy(dev[20*1024:], ext4NodeBuf(1024, 0, []ext4Extent{{0, 4, 100}}, nil))
	copy(dev[21*1024:], ext4NodeBuf(1024, 0, []ext4Extent{{4, 4, 200}}, nil))
	leaves, tree, err := ext4Tree(dev, sb, ext4NodeBuf(60, 2, nil, []uint64{10}))
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != 2 || len(tree) != 3 {
		t.Errorf("leaves %+v tree %v", leaves, tree)
	}
	// A child that claims the wrong depth, and one past the end.
	copy(dev[30*1024:], ext4NodeBuf(1024, 3, nil, nil))
	if _, _, err := ext4Tree(dev, sb, ext4NodeBuf(60, 1, nil, []uint64{30})); !errors.Is(err, ErrMalformed) {
		t.Errorf("wrong depth: %v", err)
	}
	if _, _, err := ext4Tree(dev, sb, ext4NodeBuf(60, 1, nil, []uint64{99})); !errors.Is(err, ErrMalformed) {
		t.Errorf("past the end: %v", err)
	}
	// A loop (a node that is its own child) ends at the depth check.
	copy(dev[40*1024:], ext4NodeBuf(1024, 1, nil, []uint64{40}))
	if _, _, err := ext4Tree(dev, sb, ext4NodeBuf(60, 2, nil, []uint64{40})); err == nil {
		t.Errorf("a loop was followed")
	}
}

func FuzzParseExt4Node(f *testing.F) {
	f.Add(ext4NodeBuf(60, 0, []ext4Extent{{0, 8, 1000}}, nil))
	f.Add(ext4NodeBuf(60, 1, nil, []uint64{5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseExt4Node(b)
		if err != nil {
			return
		}
		if n.Depth > ext4MaxDepth || 12+12*(len(n.Extents)+len(n.Children)) > len(b) {
			t.Fatalf("node %+v from %d bytes", n, len(b))
		}
		// A tree under it, on a small device, ends without panicking.
		dev := make(memDev, 16*1024)
		copy(dev, b)
		_, _, _ = ext4Tree(dev, ext4Super{BlockSize: 1024, BlocksCount: 16}, b)
	})
}

func FuzzParseExt4Super(f *testing.F) {
	sb := make([]byte, ext4SuperSize)
	le.PutUint16(sb[0x38:], ext4Magic)
	le.PutUint32(sb[0x20:], 8192)
	le.PutUint32(sb[0x28:], 2048)
	le.PutUint16(sb[0x58:], 256)
	f.Add(sb)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseExt4Super(b)
		if err != nil {
			return
		}
		if s.BlockSize < 1024 || s.BlockSize > 64<<10 || s.InodeSize > uint32(s.BlockSize) || s.DescSize < 32 {
			t.Fatalf("accepted %+v", s)
		}
		dev := make(memDev, 8192)
		_, _, _ = ext4InodeBlock(dev, s, 12)
	})
}
