package fsfiles

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// fanotify in FID mode (include/uapi/linux/fanotify.h): each event is a
// struct fanotify_event_metadata (u32 event_len, u8 vers, u8 reserved, u16
// metadata_len, u64 mask, s32 fd, s32 pid) followed by information
// records, each a struct fanotify_event_info_header (u8 info_type, u8 pad,
// u16 len) and, for the FID types, an 8-byte fsid and a struct file_handle
// (u32 handle_bytes, s32 handle_type, f_handle), then for the DFID_NAME
// types the entry's NUL-terminated name.
const (
	fanMetadataVersion = 3
	fanEventMetaSize   = 24

	fanModify     = 0x2
	fanCloseWrite = 0x8
	fanCreate     = 0x100
	fanDelete     = 0x200
	fanQOverflow  = 0x4000
	fanRename     = 0x10000000
	fanOnDir      = 0x40000000

	fanInfoFID        = 1
	fanInfoDFIDName   = 2
	fanInfoDFID       = 3
	fanInfoOldDFIDNam = 10
	fanInfoNewDFIDNam = 12
)

// fanHandle is a struct file_handle: its type and bytes.
type fanHandle struct {
	Type  int32
	Bytes string // f_handle, as a string so that it can key a map
}

// fanEvent is one decoded event: what happened (mask), to which object
// (Obj, the target's handle) and, for a directory entry event, in which
// directory under which name (Dir, Name); a rename also has the entry it
// left (OldDir, OldName).
type fanEvent struct {
	Mask            uint64
	Obj             fanHandle
	HasObj          bool
	Dir             fanHandle
	Name            string
	HasDir          bool
	OldDir          fanHandle
	OldName         string
	HasOld          bool
	OverflowOrError bool
}

// parseFanEvents decodes a read(2) of a fanotify descriptor in FID mode.
func parseFanEvents(buf []byte, fn func(fanEvent)) error {
	le := binary.LittleEndian
	for len(buf) > 0 {
		if len(buf) < fanEventMetaSize {
			return fmt.Errorf("%w: fanotify event of %d bytes", ErrMalformed, len(buf))
		}
		evLen, vers, metaLen := int(le.Uint32(buf[0:])), buf[4], int(le.Uint16(buf[6:]))
		if vers != fanMetadataVersion || metaLen < fanEventMetaSize || evLen < metaLen || evLen > len(buf) {
			return fmt.Errorf("%w: fanotify event version %d length %d meta %d of %d", ErrMalformed, vers, evLen, metaLen, len(buf))
		}
		ev := fanEvent{Mask: le.Uint64(buf[8:])}
		if ev.Mask&fanQOverflow != 0 {
			ev.OverflowOrError = true
		}
		info := buf[metaLen:evLen]
		for len(info) > 0 {
			if len(info) < 4 {
				return fmt.Errorf("%w: fanotify info of %d bytes", ErrMalformed, len(info))
			}
			typ, l := info[0], int(le.Uint16(info[2:]))
			if l < 4 || l > len(info) {
				return fmt.Errorf("%w: fanotify info length %d of %d", ErrMalformed, l, len(info))
			}
			rec := info[4:l]
			switch typ {
			case fanInfoFID, fanInfoDFID, fanInfoDFIDName, fanInfoOldDFIDNam, fanInfoNewDFIDNam:
				h, rest, err := parseFanFID(rec)
				if err != nil {
					return err
				}
				var name string
				if typ != fanInfoFID && typ != fanInfoDFID {
					nul := bytes.IndexByte(rest, 0)
					if nul < 0 {
						return fmt.Errorf("%w: fanotify name not terminated", ErrMalformed)
					}
					name = string(rest[:nul])
				}
				switch typ {
				case fanInfoFID:
					ev.Obj, ev.HasObj = h, true
				case fanInfoDFIDName, fanInfoNewDFIDNam, fanInfoDFID:
					ev.Dir, ev.Name, ev.HasDir = h, name, true
				case fanInfoOldDFIDNam:
					ev.OldDir, ev.OldName, ev.HasOld = h, name, true
				}
			}
			info = info[l:]
		}
		fn(ev)
		buf = buf[evLen:]
	}
	return nil
}

// parseFanFID decodes fsid and struct file_handle, returning what follows.
func parseFanFID(rec []byte) (fanHandle, []byte, error) {
	le := binary.LittleEndian
	if len(rec) < 8+8 {
		return fanHandle{}, nil, fmt.Errorf("%w: fanotify fid of %d bytes", ErrMalformed, len(rec))
	}
	n := int(le.Uint32(rec[8:]))
	if n > len(rec)-16 || n > 128 { // MAX_HANDLE_SZ
		return fanHandle{}, nil, fmt.Errorf("%w: fanotify handle of %d bytes in %d", ErrMalformed, n, len(rec))
	}
	return fanHandle{Type: int32(le.Uint32(rec[12:])), Bytes: string(rec[16 : 16+n])}, rec[16+n:], nil
}
