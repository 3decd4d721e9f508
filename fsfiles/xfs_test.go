package fsfiles

import (
	"errors"
	"testing"
)

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
