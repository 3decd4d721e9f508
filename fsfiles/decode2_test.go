package fsfiles

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// fanInfo encodes one information record with a file handle and, for the
// DFID_NAME types, a name.
func fanInfo(typ byte, h fanHandle, name string) []byte {
	body := make([]byte, 8+8+len(h.Bytes))
	le.PutUint32(body[8:], uint32(len(h.Bytes)))
	le.PutUint32(body[12:], uint32(h.Type))
	copy(body[16:], h.Bytes)
	if typ != fanInfoFID && typ != fanInfoDFID {
		body = append(append(body, name...), 0)
	}
	rec := make([]byte, 4, 4+len(body))
	rec[0] = typ
	le.PutUint16(rec[2:], uint16(4+len(body)))
	return append(rec, body...)
}

// fanEventBuf encodes one event.
func fanEventBuf(mask uint64, infos ...[]byte) []byte {
	b := make([]byte, fanEventMetaSize)
	b[4] = fanMetadataVersion
	le.PutUint16(b[6:], fanEventMetaSize)
	le.PutUint64(b[8:], mask)
	le.PutUint32(b[16:], ^uint32(0)) // FAN_NOFD
	for _, in := range infos {
		b = append(b, in...)
	}
	le.PutUint32(b[0:], uint32(len(b)))
	return b
}

func TestParseFanEvents(t *testing.T) {
	dir := fanHandle{Type: 1, Bytes: "\x02\x00\x00\x00\x00\x00\x00\x00"}
	obj := fanHandle{Type: 1, Bytes: "\x0c\x00\x00\x00\x07\x00\x00\x00"}
	buf := append(fanEventBuf(fanCreate, fanInfo(fanInfoDFIDName, dir, "new file"), fanInfo(fanInfoFID, obj, "")),
		fanEventBuf(fanModify, fanInfo(fanInfoFID, obj, ""))...)
	buf = append(buf, fanEventBuf(fanRename|fanOnDir, fanInfo(fanInfoOldDFIDNam, dir, "a"), fanInfo(fanInfoNewDFIDNam, obj, "b"), fanInfo(fanInfoFID, obj, ""))...)
	buf = append(buf, fanEventBuf(fanQOverflow)...)
	var got []fanEvent
	if err := parseFanEvents(buf, func(e fanEvent) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	want := []fanEvent{
		{Mask: fanCreate, Dir: dir, Name: "new file", HasDir: true, Obj: obj, HasObj: true},
		{Mask: fanModify, Obj: obj, HasObj: true},
		{Mask: fanRename | fanOnDir, OldDir: dir, OldName: "a", HasOld: true, Dir: obj, Name: "b", HasDir: true, Obj: obj, HasObj: true},
		{Mask: fanQOverflow, OverflowOrError: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	for name, b := range map[string][]byte{
		"short":      buf[:10],
		"bad length": append(fanEventBuf(fanModify)[:0:0], 0xff, 0xff, 0, 0, 3, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		"no nul":     fanEventBuf(fanCreate, fanInfo(fanInfoFID, dir, "")[:0:0], func() []byte { r := fanInfo(fanInfoDFIDName, dir, "x"); return r[:len(r)-1] }()),
	} {
		if err := parseFanEvents(b, func(fanEvent) {}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseFanEvents(f *testing.F) {
	h := fanHandle{Type: 1, Bytes: "12345678"}
	f.Add(fanEventBuf(fanCreate, fanInfo(fanInfoDFIDName, h, "x"), fanInfo(fanInfoFID, h, "")))
	f.Add(fanEventBuf(fanModify, fanInfo(fanInfoFID, h, "")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseFanEvents(b, func(e fanEvent) {
			if len(e.Obj.Bytes) > 128 || len(e.Dir.Bytes) > 128 || len(e.OldDir.Bytes) > 128 {
				t.Fatalf("handle longer than MAX_HANDLE_SZ: %+v", e)
			}
		})
	})
}

func TestParseMapsLine(t *testing.T) {
	m, err := parseMapsLine("7f2c1c000000-7f2c1c100000 rw-s 00000000 07:00 131                        /mnt/fs/mapped (deleted)")
	if err != nil {
		t.Fatal(err)
	}
	if m.Range != "7f2c1c000000-7f2c1c100000" || !m.SharedWrite || m.Dev != unix.Mkdev(7, 0) || m.Ino != 131 || m.Path != "/mnt/fs/mapped (deleted)" {
		t.Errorf("got %+v", m)
	}
	m, err = parseMapsLine("55d0c8a2f000-55d0c8a31000 r--p 00000000 fd:01 2884 /usr/bin/cat")
	if err != nil || m.SharedWrite || m.Dev != unix.Mkdev(0xfd, 1) {
		t.Errorf("got %+v %v", m, err)
	}
	m, err = parseMapsLine("7ffd1a7e6000-7ffd1a807000 rw-p 00000000 00:00 0                          [stack]")
	if err != nil || m.Ino != 0 || m.Path != "[stack]" {
		t.Errorf("got %+v %v", m, err)
	}
	m, err = parseMapsLine("7ffd1a7e6000-7ffd1a807000 rw-p 00000000 00:00 0")
	if err != nil || m.Path != "" {
		t.Errorf("no path: %+v %v", m, err)
	}
	for _, bad := range []string{"", "zz-1 rw-p 0 00:00 0", "1-2 rw 0 00:00 0", "1-2 rw-p 0 0000 0", "1-2 rw-p 0 00:00 x"} {
		if _, err := parseMapsLine(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if f, ok := parseFdinfoFlags([]byte("pos:\t0\nflags:\t0100002\nmnt_id:\t22\n")); !ok || f&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("fdinfo flags %o %v", f, ok)
	}
}

func FuzzParseMapsLine(f *testing.F) {
	f.Add("7f2c1c000000-7f2c1c100000 rw-s 00000000 07:00 131                        /mnt/fs/mapped (deleted)")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMapsLine(line)
		if err == nil && (len(m.Range) == 0 || len(m.Range) > len(line)) {
			t.Fatalf("bad parse %+v of %q", m, line)
		}
	})
}

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

// xfsGeomBuf encodes the fields of struct xfs_fsop_geom the package reads.
func xfsGeomBuf(g xfsGeom) []byte {
	b := make([]byte, xfsGeomSize)
	le.PutUint32(b[0:], g.BlockSize)
	le.PutUint32(b[8:], g.AGBlocks)
	le.PutUint32(b[12:], g.AGCount)
	le.PutUint32(b[16:], g.LogBlocks)
	le.PutUint32(b[20:], g.SectSize)
	le.PutUint32(b[24:], g.InodeSize)
	le.PutUint64(b[32:], g.DataBlocks)
	le.PutUint64(b[56:], g.LogStart)
	le.PutUint32(b[92:], g.Flags)
	return b
}

func TestXFSGeom(t *testing.T) {
	// The geometry of mkfs.xfs 6.1 on 400 MB: 4 AGs of 25600 4-KiB blocks,
	// 512-byte inodes, the log in AG 2 (xfs_db: logstart 65542 = daddr
	// 409648).
	want := xfsGeom{BlockSize: 4096, AGBlocks: 25600, AGCount: 4, LogBlocks: 16384, SectSize: 512, InodeSize: 512,
		DataBlocks: 102400, LogStart: 65542, Flags: xfsGeomFlagRmapbt}
	g, err := decodeXFSGeom(xfsGeomBuf(want))
	if err != nil || g != want {
		t.Fatalf("decode: %v %+v", err, g)
	}
	if g.agblklog() != 15 || g.inopblog() != 3 || !g.rmap() {
		t.Errorf("agblklog %d inopblog %d", g.agblklog(), g.inopblog())
	}
	if s, ok := g.fsbToSector(65542); !ok || s != 409648 {
		t.Errorf("logstart sector %d %v, want 409648", s, ok)
	}
	// Inode 131 (the first file of a new filesystem) lies in AG 0 block 16
	// (agino 131 >> inopblog 3), sector 128.
	if s, ok := g.inoToSector(131); !ok || s != 128 {
		t.Errorf("inode 131 at sector %d %v, want 128", s, ok)
	}
	if _, ok := g.fsbToSector(4 << 15); ok {
		t.Errorf("AG 4 accepted")
	}
	regs := g.staticRegions(0, 1<<40)
	if len(regs) != 5 || regs[1].Start != 204800 || regs[1].Len != 8 || regs[4].Kind != KindJournal || regs[4].Start != 409648 || regs[4].Len != 16384*8 {
		t.Errorf("regions %+v", regs)
	}
	for _, bad := range []xfsGeom{{BlockSize: 3000, SectSize: 512, InodeSize: 512, AGBlocks: 1, AGCount: 1},
		{BlockSize: 4096, SectSize: 8192, InodeSize: 512, AGBlocks: 1, AGCount: 1},
		{BlockSize: 4096, SectSize: 512, InodeSize: 512, AGBlocks: 0, AGCount: 1}} {
		if _, err := decodeXFSGeom(xfsGeomBuf(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func FuzzDecodeXFS(f *testing.F) {
	f.Add(xfsGeomBuf(xfsGeom{BlockSize: 4096, AGBlocks: 25600, AGCount: 4, SectSize: 512, InodeSize: 512, LogStart: 65542, LogBlocks: 16384}), uint64(131))
	f.Fuzz(func(t *testing.T, b []byte, ino uint64) {
		g, err := decodeXFSGeom(b)
		if err == nil {
			g.inoToSector(ino)
			g.fsbToSector(ino)
			if regs := g.staticRegions(0, 1<<20); len(regs) > int(g.AGCount)+1 {
				t.Fatalf("%d regions of %d AGs", len(regs), g.AGCount)
			}
		}
		starts, _, err := decodeInumbers(b)
		if err == nil && len(starts) > len(b)/xfsInumbersSize {
			t.Fatalf("%d groups from %d bytes", len(starts), len(b))
		}
	})
}
