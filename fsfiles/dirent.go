package fsfiles

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// dirent is one entry of a getdents64 reply.
type dirent struct {
	Ino  uint64
	Type uint8
	Name string
}

// direntHead is the fixed part of struct linux_dirent64: u64 d_ino, s64
// d_off, u16 d_reclen, u8 d_type, then the NUL-terminated name.
const direntHead = 19

// parseDirents decodes a getdents64 reply, calling fn for each entry
// except "." and "..". A record that does not fit, has no name or no NUL
// inside its length is an error matching ErrMalformed.
func parseDirents(buf []byte, fn func(dirent)) error {
	le := binary.LittleEndian
	for len(buf) > 0 {
		if len(buf) < direntHead {
			return fmt.Errorf("%w: dirent of %d bytes", ErrMalformed, len(buf))
		}
		reclen := int(le.Uint16(buf[16:]))
		if reclen <= direntHead || reclen > len(buf) {
			return fmt.Errorf("%w: dirent length %d of %d", ErrMalformed, reclen, len(buf))
		}
		raw := buf[direntHead:reclen]
		nul := bytes.IndexByte(raw, 0)
		if nul <= 0 {
			return fmt.Errorf("%w: dirent name not terminated", ErrMalformed)
		}
		name := raw[:nul]
		if !(len(name) == 1 && name[0] == '.') && !(len(name) == 2 && name[0] == '.' && name[1] == '.') {
			if bytes.IndexByte(name, '/') >= 0 {
				return fmt.Errorf("%w: dirent name %q holds a slash", ErrMalformed, name)
			}
			fn(dirent{Ino: le.Uint64(buf[0:]), Type: buf[18], Name: string(name)})
		}
		buf = buf[reclen:]
	}
	return nil
}
