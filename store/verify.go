package store

// Checking a bbolt file before bbolt maps it. bbolt trusts its file: it
// maps it (beyond its end: the map is at least 32 KiB and a power of two),
// follows page ids without bounds checks, reads element offsets and
// lengths as they are, and, on a read-write open with NoFreelistSync,
// walks every reachable page in a goroutine of its own that panics at the
// first inconsistency, where no recover of ours can reach. A truncated
// file is then a SIGBUS, a flipped offset an index out of range, and a
// damaged page a crash of the whole process. So the store reads the file
// itself first, with pread and bounds checks, and hands it to bbolt only
// if everything bbolt will touch is sound: the meta page bbolt will choose
// (picked exactly as bbolt picks it), the freelist page if the file has
// one, and every page reachable from the root, with bbolt's own Check's
// rules (each page referenced once, of the right type, below the high
// water mark and inside the file, keys sorted and within their parent's
// bounds) plus the bounds of every element, key, value and inline bucket.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
)

// The bbolt file format (go.etcd.io/bbolt/internal/common), version 2.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	metaOffset       = pageHeaderSize
	metaSumLen       = 56 // the meta's bytes before its checksum
	metaLen          = 64
	branchElemSize   = 16 // pos u32, ksize u32, pgid u64
	leafElemSize     = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root u64, sequence u64
	noFreelist       = ^uint64(0)

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10

	bucketLeafFlag = 0x01

	minPageSize = 1 << 10
	maxPageSize = 1 << 16
)

// CorruptFileError is a database file that cannot be handed to bbolt:
// not a bbolt file, or a bbolt file that is truncated or damaged. It
// matches ErrCorrupt.
type CorruptFileError struct {
	Path   string
	Page   int64  // the page at fault, -1 when the fault is not in one page
	Detail string // what is wrong, in words
}

func (e *CorruptFileError) Error() string {
	if e.Page >= 0 {
		return fmt.Sprintf("store: %s: %v: page %d: %s", e.Path, ErrCorrupt, e.Page, e.Detail)
	}
	return fmt.Sprintf("store: %s: %v: %s", e.Path, ErrCorrupt, e.Detail)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptFileError) Is(target error) bool { return target == ErrCorrupt }

// fileInfo is what verifyFile learnt of a sound file.
type fileInfo struct {
	pageSize int
	txid     uint64 // of the meta bbolt uses
	hwm      uint64 // pages in use
	empty    bool   // the root bucket has no keys
	unknown  uint64 // pages in use that are neither reachable nor listed free
	zero     bool   // the file is empty: bbolt will initialise it
}

// fresh reports whether the file holds nothing: it is empty, or its root
// bucket has no keys and every page in use is accounted for (the meta
// pages, the root, a freelist listing all the others). That is what
// bbolt's own initialisation writes, and what an interrupted first Open
// leaves; the only bucket-less files Open initialises. A daxstack file
// keeps no freelist, so one whose root lost its keys has pages nothing
// accounts for: it is refused, not started over.
func (fi fileInfo) fresh() bool { return fi.zero || (fi.empty && fi.unknown == 0) }

// boltMeta is a decoded meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64
	txid     uint64
}

// decodeMeta decodes and validates the meta in a page buffer, as bbolt's
// Meta.Validate does: magic, version, then checksum.
func decodeMeta(b []byte) (boltMeta, error) {
	if len(b) < metaOffset+metaLen {
		return boltMeta{}, errors.New("short meta page")
	}
	m := b[metaOffset : metaOffset+metaLen]
	le := binary.LittleEndian
	switch {
	case le.Uint32(m[0:]) != boltMagic:
		return boltMeta{}, errors.New("no bbolt magic number")
	case le.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, not %d", le.Uint32(m[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, errors.New("meta checksum mismatch")
	}
	return boltMeta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		hwm:      le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// verifier walks one file.
type verifier struct {
	f    io.ReaderAt
	path string
	size int64
	ps   int
	hwm  uint64
	seen bitset // pages reached (or the meta or freelist pages)
	free bitset // pages the freelist page lists
	buf  []byte
}

func (v *verifier) bad(page int64, format string, args ...any) error {
	return &CorruptFileError{Path: v.path, Page: page, Detail: fmt.Sprintf(format, args...)}
}

// readAt reads len(b) bytes at off, zero-filling past the end of the
// file, and reports how many were in the file.
func readAt(f io.ReaderAt, b []byte, off int64) (int, error) {
	n, err := f.ReadAt(b, off)
	if err == io.EOF {
		clear(b[n:])
		err = nil
	}
	return n, err
}

// verifyFile checks the file f (of the given size, at path) as the
// package comment at the top of this file says. A nil error means bbolt
// can open and use it without faulting.
func verifyFile(f io.ReaderAt, size int64, path string) (fileInfo, error) {
	if size == 0 {
		return fileInfo{zero: true}, nil
	}
	v := &verifier{f: f, path: path, size: size}
	ps, err := v.pageSize()
	if err != nil {
		return fileInfo{}, err
	}
	v.ps = ps
	if size < int64(2*ps) {
		return fileInfo{}, v.bad(-1, "the file is %d bytes, less than its two meta pages of %d bytes", size, ps)
	}
	m, err := v.chooseMeta()
	if err != nil {
		return fileInfo{}, err
	}
	if int(m.pageSize) != ps {
		return fileInfo{}, v.bad(-1, "the meta page in use says pages of %d bytes, the file has %d", m.pageSize, ps)
	}
	switch {
	case m.hwm < 3 || m.hwm > uint64(size/int64(ps)):
		return fileInfo{}, v.bad(-1, "the file's %d pages of %d bytes (%d bytes) cannot hold the %d pages its meta says are in use (truncated?)",
			size/int64(ps), ps, size, m.hwm)
	case m.root < 2 || m.root >= m.hwm:
		return fileInfo{}, v.bad(-1, "the root bucket's page %d is outside pages 2 to %d", m.root, m.hwm-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return fileInfo{}, v.bad(-1, "the freelist page %d is outside pages 2 to %d", m.freelist, m.hwm-1)
	}
	v.hwm = m.hwm
	v.seen = newBitset(m.hwm)
	v.free = newBitset(m.hwm)
	v.seen.set(0)
	v.seen.set(1)
	if m.freelist != noFreelist {
		if err := v.freelist(m.freelist); err != nil {
			return fileInfo{}, err
		}
	}
	empty, err := v.tree(m.root)
	if err != nil {
		return fileInfo{}, err
	}
	var unknown uint64
	for p := range m.hwm {
		if !v.seen.has(p) && !v.free.has(p) {
			unknown++
		}
	}
	return fileInfo{pageSize: ps, txid: m.txid, hwm: m.hwm, empty: empty, unknown: unknown}, nil
}

// pageSize finds the page size as bbolt's getPageSize does: from the
// first meta page if it is valid, else from the second one at each offset
// bbolt tries, else the system's page size if either page could be read.
func (v *verifier) pageSize() (int, error) {
	var buf [0x1000]byte
	canRead := false
	if n, err := readAt(v.f, buf[:], 0); err != nil {
		return 0, fmt.Errorf("store: read %s: %w", v.path, err)
	} else if n == len(buf) {
		canRead = true
		if m, err := decodeMeta(buf[:]); err == nil {
			return v.checkPageSize(m.pageSize)
		}
	}
	for i := range 15 {
		pos := int64(1024) << i
		if pos >= v.size-1024 {
			break
		}
		n, err := readAt(v.f, buf[:], pos)
		if err != nil {
			return 0, fmt.Errorf("store: read %s: %w", v.path, err)
		}
		if n == len(buf) || int64(n) == v.size-pos {
			canRead = true
			if m, err := decodeMeta(buf[:]); err == nil {
				return v.checkPageSize(m.pageSize)
			}
		}
	}
	if canRead {
		return v.checkPageSize(uint32(os.Getpagesize()))
	}
	return 0, v.bad(-1, "not a usable bbolt file: %d bytes, too short for a meta page", v.size)
}

func (v *verifier) checkPageSize(ps uint32) (int, error) {
	if ps < minPageSize || ps > maxPageSize || bits.OnesCount32(ps) != 1 {
		return 0, v.bad(-1, "a meta page says pages of %d bytes", ps)
	}
	return int(ps), nil
}

// chooseMeta reads both meta pages and returns the one bbolt uses: the
// valid one with the higher txid, or the other if that one is invalid.
func (v *verifier) chooseMeta() (boltMeta, error) {
	var ms [2]boltMeta
	var errs [2]error
	var flags [2]uint16
	for i := range 2 {
		b := make([]byte, v.ps)
		if _, err := readAt(v.f, b, int64(i*v.ps)); err != nil {
			return boltMeta{}, fmt.Errorf("store: read %s: %w", v.path, err)
		}
		ms[i], errs[i] = decodeMeta(b)
		flags[i] = binary.LittleEndian.Uint16(b[8:])
	}
	// bbolt takes the one with the higher txid if it is valid, else the
	// other if that one is (an invalid page's txid decodes as 0 here;
	// bbolt compares raw txids, which picks the same page: with one page
	// invalid, the valid one is used either way).
	a, b := 0, 1
	if ms[1].txid > ms[0].txid || (errs[0] != nil && errs[1] == nil) {
		a, b = 1, 0
	}
	if errs[a] != nil {
		a = b
	}
	if errs[a] != nil {
		return boltMeta{}, v.bad(-1, "not a usable bbolt file: both meta pages are invalid (page 0: %v; page 1: %v)", errs[0], errs[1])
	}
	if flags[a] != flagMeta {
		// bbolt does not look at a meta page's flags; a valid meta
		// in a page not flagged as one was written over.
		return boltMeta{}, v.bad(int64(a), "the meta page in use has flags %#x", flags[a])
	}
	return ms[a], nil
}

// page reads the page id and its overflow pages, checking its header
// (the type with ok), and marks them reached. The buffer it returns is
// reused by the next call.
func (v *verifier) page(id uint64, ok func(flags uint16) bool, what string) ([]byte, error) {
	if id < 2 || id >= v.hwm {
		return nil, v.bad(int64(id), "%s is outside pages 2 to %d", what, v.hwm-1)
	}
	var hdr [pageHeaderSize]byte
	if _, err := readAt(v.f, hdr[:], int64(id)*int64(v.ps)); err != nil {
		return nil, fmt.Errorf("store: read %s: %w", v.path, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(hdr[0:]); got != id {
		return nil, v.bad(int64(id), "%s says it is page %d", what, got)
	}
	if flags := le.Uint16(hdr[8:]); !ok(flags) {
		return nil, v.bad(int64(id), "%s has flags %#x", what, flags)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if overflow >= v.hwm-id {
		return nil, v.bad(int64(id), "%s runs over %d more pages, past the %d in use", what, overflow, v.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if v.seen.has(p) {
			return nil, v.bad(int64(p), "referenced twice (reached again as %s, page %d)", what, id)
		}
		if v.free.has(p) {
			return nil, v.bad(int64(p), "%s is in the freelist", what)
		}
		v.seen.set(p)
	}
	n := int((1 + overflow) * uint64(v.ps))
	if cap(v.buf) < n {
		v.buf = make([]byte, n)
	}
	b := v.buf[:n]
	if _, err := readAt(v.f, b, int64(id)*int64(v.ps)); err != nil {
		return nil, fmt.Errorf("store: read %s: %w", v.path, err)
	}
	return b, nil
}

// freelist checks a synced freelist page: every id listed lies in the
// pages in use, once.
func (v *verifier) freelist(id uint64) error {
	b, err := v.page(id, func(f uint16) bool { return f == flagFreelist }, "the freelist page")
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	idx, count := uint64(0), uint64(le.Uint16(b[10:]))
	if count == 0xFFFF {
		idx, count = 1, le.Uint64(b[pageHeaderSize:])
	}
	if room := uint64(len(b)-pageHeaderSize) / 8; idx+count > room || count > 1<<62 {
		return v.bad(int64(id), "the freelist lists %d pages, its page holds %d", count, room-idx)
	}
	for i := range count {
		p := le.Uint64(b[pageHeaderSize+8*(idx+i):])
		switch {
		case p < 2 || p >= v.hwm:
			return v.bad(int64(id), "the freelist lists page %d, outside pages 2 to %d", p, v.hwm-1)
		case v.free.has(p):
			return v.bad(int64(id), "the freelist lists page %d twice", p)
		case v.seen.has(p):
			return v.bad(int64(id), "the freelist lists page %d, which is in use", p)
		}
		v.free.set(p)
	}
	return nil
}

// walk is one subtree to check: a page, or an inline bucket's page, with
// the bounds its keys must keep (lo inclusive, hi exclusive; nil: none).
type walk struct {
	pgid   uint64 // 0: inline
	inline []byte // the inline page, from its header
	lo, hi []byte
	// first, for a page reached through a branch, is the key the branch
	// gives it, which must be its own first key: bbolt's Check does not
	// ask it, but a commit relies on it (spill finds the branch element
	// to update by the child's first key, and adds a second one when it
	// is not there, which breaks the tree).
	first []byte
	depth int
}

// tree checks every page reachable from the root bucket's page, and
// reports whether the root bucket is empty.
func (v *verifier) tree(root uint64) (bool, error) {
	stack := []walk{{pgid: root}}
	rootEmpty := false
	for len(stack) > 0 {
		w := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var b []byte
		var err error
		what := "a page"
		if w.inline != nil {
			b, what = w.inline, "an inline bucket"
			if len(b) < pageHeaderSize {
				return false, v.bad(-1, "an inline bucket of %d bytes has no room for its page header", len(b))
			}
		} else {
			b, err = v.pageAny(w.pgid)
			if err != nil {
				return false, err
			}
		}
		page := int64(w.pgid)
		if w.inline != nil {
			page = -1
		}
		le := binary.LittleEndian
		flags, count := le.Uint16(b[8:]), int(le.Uint16(b[10:]))
		if w.first != nil {
			if count == 0 {
				return false, v.bad(page, "a page below a branch with no elements")
			}
			if k, ok := firstKey(b, flags); !ok || !bytes.Equal(k, w.first) {
				return false, v.bad(page, "its first key %s is not its branch's key %s", quoteKey(k), quoteKey(w.first))
			}
		}
		switch {
		case flags == flagBranch && w.inline == nil:
			if count == 0 {
				return false, v.bad(page, "a branch page with no elements")
			}
			kids, err := v.branch(b, page, count, w)
			if err != nil {
				return false, err
			}
			stack = append(stack, kids...)
		case flags == flagLeaf:
			kids, err := v.leaf(b, page, count, w, what)
			if err != nil {
				return false, err
			}
			if w.pgid == root && w.inline == nil && w.depth == 0 && count == 0 {
				rootEmpty = true
			}
			stack = append(stack, kids...)
		default:
			return false, v.bad(page, "%s has flags %#x, not a branch or leaf page", what, flags)
		}
	}
	return rootEmpty, nil
}

// pageAny reads a tree page, a branch or a leaf. The buffer is reused by
// the next read: what outlives the page (keys, inline buckets) is copied.
func (v *verifier) pageAny(id uint64) ([]byte, error) {
	return v.page(id, func(f uint16) bool { return f == flagBranch || f == flagLeaf }, "a page of the tree")
}

// elemBytes returns the bytes [pos, pos+n) counted from the element at off,
// as bbolt addresses keys and values, checking they lie in b.
func elemBytes(b []byte, off int, pos, n uint32) ([]byte, bool) {
	start := uint64(off) + uint64(pos)
	end := start + uint64(n)
	if end > uint64(len(b)) {
		return nil, false
	}
	return b[start:end], true
}

// firstKey returns the key of a page's first element (a branch or a leaf
// page), if it lies in the page; the element's other checks come later.
func firstKey(b []byte, flags uint16) ([]byte, bool) {
	const off = pageHeaderSize
	if len(b) < off+16 {
		return nil, false
	}
	le := binary.LittleEndian
	if flags == flagBranch {
		return elemBytes(b, off, le.Uint32(b[off:]), le.Uint32(b[off+4:]))
	}
	return elemBytes(b, off, le.Uint32(b[off+4:]), le.Uint32(b[off+8:]))
}

// keyInBounds checks a key against a subtree's bounds and the key before
// it on the same page.
func keyInBounds(key, prev, lo, hi []byte, first bool) string {
	switch {
	case len(key) == 0:
		return "an empty key"
	case first && lo != nil && bytes.Compare(key, lo) < 0:
		return fmt.Sprintf("key %s is below its parent's key %s", quoteKey(key), quoteKey(lo))
	case !first && bytes.Compare(prev, key) >= 0:
		return fmt.Sprintf("key %s does not sort after the key before it, %s", quoteKey(key), quoteKey(prev))
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Sprintf("key %s is not below the next key of its parent, %s", quoteKey(key), quoteKey(hi))
	}
	return ""
}

// quoteKey quotes a key for a message, cut to a readable length.
func quoteKey(k []byte) string {
	if len(k) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", k[:40], len(k))
	}
	return fmt.Sprintf("%q", k)
}

func (v *verifier) branch(b []byte, page int64, count int, w walk) ([]walk, error) {
	if pageHeaderSize+count*branchElemSize > len(b) {
		return nil, v.bad(page, "%d branch elements do not fit in %d bytes", count, len(b))
	}
	le := binary.LittleEndian
	keys := make([][]byte, count)
	kids := make([]uint64, count)
	for i := range count {
		off := pageHeaderSize + i*branchElemSize
		key, ok := elemBytes(b, off, le.Uint32(b[off:]), le.Uint32(b[off+4:]))
		if !ok {
			return nil, v.bad(page, "branch element %d's key passes the end of the page", i)
		}
		var prev []byte
		if i > 0 {
			prev = keys[i-1]
		}
		if why := keyInBounds(key, prev, w.lo, w.hi, i == 0); why != "" {
			return nil, v.bad(page, "branch element %d: %s", i, why)
		}
		keys[i], kids[i] = bytes.Clone(key), le.Uint64(b[off+8:])
	}
	out := make([]walk, count)
	for i := range count {
		hi := w.hi
		if i+1 < count {
			hi = keys[i+1]
		}
		// Pushed in reverse, so the walk goes left to right.
		out[count-1-i] = walk{pgid: kids[i], lo: keys[i], hi: hi, first: keys[i], depth: w.depth + 1}
	}
	return out, nil
}

func (v *verifier) leaf(b []byte, page int64, count int, w walk, what string) ([]walk, error) {
	if pageHeaderSize+count*leafElemSize > len(b) {
		return nil, v.bad(page, "%s: %d leaf elements do not fit in %d bytes", what, count, len(b))
	}
	le := binary.LittleEndian
	var out []walk
	var prev []byte
	for i := range count {
		off := pageHeaderSize + i*leafElemSize
		flags, pos, ksize, vsize := le.Uint32(b[off:]), le.Uint32(b[off+4:]), le.Uint32(b[off+8:]), le.Uint32(b[off+12:])
		if flags&^bucketLeafFlag != 0 {
			return nil, v.bad(page, "%s: leaf element %d has flags %#x", what, i, flags)
		}
		start := uint64(off) + uint64(pos)
		kend := start + uint64(ksize)
		vend := kend + uint64(vsize)
		if vend > uint64(len(b)) {
			return nil, v.bad(page, "%s: leaf element %d's key and value (%d+%d bytes at %d) pass the end (%d bytes)", what, i, ksize, vsize, start, len(b))
		}
		key, val := b[start:kend], b[kend:vend]
		if why := keyInBounds(key, prev, w.lo, w.hi, i == 0); why != "" {
			return nil, v.bad(page, "%s: leaf element %d: %s", what, i, why)
		}
		prev = key
		if flags&bucketLeafFlag == 0 {
			continue
		}
		if len(val) < bucketHeaderSize {
			return nil, v.bad(page, "%s: bucket %s has a value of %d bytes, shorter than a bucket header", what, quoteKey(key), len(val))
		}
		if root := le.Uint64(val); root != 0 {
			out = append(out, walk{pgid: root, depth: w.depth + 1})
			continue
		}
		out = append(out, walk{inline: bytes.Clone(val[bucketHeaderSize:]), depth: w.depth + 1})
	}
	return out, nil
}

// bitset is a set of page ids below a bound.
type bitset []uint64

func newBitset(n uint64) bitset    { return make(bitset, (n+63)/64) }
func (s bitset) has(i uint64) bool { return s[i/64]&(1<<(i%64)) != 0 }
func (s bitset) set(i uint64)      { s[i/64] |= 1 << (i % 64) }
