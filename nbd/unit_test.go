package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
)

func descriptors(b []byte) [][2]uint32 {
	var out [][2]uint32
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, [2]uint32{binary.BigEndian.Uint32(b[i:]), binary.BigEndian.Uint32(b[i+4:])})
	}
	return out
}

func TestAppendDescriptors(t *testing.T) {
	tests := []struct {
		name        string
		off, length uint64
		reqOne      bool
		ext         []Extent
		want        string
		err         bool
	}{
		{"nothing flagged", 100, 1000, false, nil, "[[1000 0]]", false},
		{"one inside", 0, 1000, false, []Extent{{100, 50, 1}}, "[[100 0] [50 1] [850 0]]", false},
		{"clipped at both ends", 100, 100, false, []Extent{{0, 150, 3}, {180, 100, 1}}, "[[50 3] [30 0] [20 1]]", false},
		{"adjacent equal flags merge", 0, 300, false, []Extent{{0, 100, 1}, {100, 100, 1}}, "[[200 1] [100 0]]", false},
		{"adjacent different flags", 0, 200, false, []Extent{{0, 100, 1}, {100, 100, 3}}, "[[100 1] [100 3]]", false},
		{"flags 0 merge with gaps", 0, 300, false, []Extent{{100, 100, 0}}, "[[300 0]]", false},
		{"before and after the range", 1000, 100, false, []Extent{{0, 10, 1}, {5000, 10, 1}}, "[[100 0]]", false},
		{"REQ_ONE", 0, 1000, true, []Extent{{100, 50, 1}}, "[[100 0]]", false},
		{"REQ_ONE merged run", 0, 1000, true, []Extent{{0, 100, 1}, {100, 200, 1}, {300, 1, 2}}, "[[300 1]]", false},
		{"REQ_ONE covering all", 0, 1000, true, []Extent{{0, 5000, 1}}, "[[1000 1]]", false},
		{"empty extents skipped", 0, 100, false, []Extent{{10, 0, 1}, {20, -5, 1}}, "[[100 0]]", false},
		{"overlap is a backend bug", 0, 1000, false, []Extent{{0, 100, 1}, {50, 100, 2}}, "", true},
		{"disorder is a backend bug", 0, 1000, false, []Extent{{500, 100, 1}, {100, 100, 2}}, "", true},
		{"negative offset", 0, 1000, false, []Extent{{-1, 100, 1}}, "", true},
		{"overflowing extent", 0, 1000, false, []Extent{{1, 1<<63 - 1, 1}}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := appendDescriptors(nil, tc.off, tc.length, tc.reqOne, tc.ext)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err != nil {
				return
			}
			got := descriptors(b)
			if fmt.Sprint(got) != tc.want {
				t.Errorf("descriptors %v, want %s", got, tc.want)
			}
			var sum uint64
			for _, d := range got {
				if d[0] == 0 {
					t.Error("a descriptor of length 0")
				}
				sum += uint64(d[0])
			}
			if sum > tc.length {
				t.Errorf("descriptors cover %d of %d", sum, tc.length)
			}
		})
	}
}

func TestAppendDescriptorsLimit(t *testing.T) {
	var ext []Extent
	for i := range int64(maxDescriptors) {
		ext = append(ext, Extent{Offset: 2*i + 1, Length: 1, Flags: 1})
	}
	b, err := appendDescriptors(nil, 0, 1<<20, false, ext)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b) / 8; n != maxDescriptors {
		t.Errorf("%d descriptors, want at most %d", n, maxDescriptors)
	}
}

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		err   error
		flags uint16
		want  Errno
	}{
		{syscall.EIO, 0, EIO},
		{fmt.Errorf("leaf x: %w", syscall.EIO), 0, EIO},
		{syscall.EROFS, 0, EPERM},
		{syscall.EPERM, 0, EPERM},
		{syscall.ENOSPC, 0, ENOSPC},
		{syscall.EDQUOT, 0, ENOSPC},
		{syscall.EFBIG, 0, ENOSPC},
		{syscall.EINVAL, 0, EINVAL},
		{syscall.EOPNOTSUPP, 0, EINVAL},
		{syscall.EOPNOTSUPP, cmdFlagFastZero, ENOTSUP},
		{syscall.EOVERFLOW, 0, EINVAL},
		{syscall.EOVERFLOW, cmdFlagDF, EOVERFLOW},
		{ErrExportGone, 0, ESHUTDOWN},
		{&OffsetError{Offset: 9, Err: syscall.EIO}, 0, EIO},
		{io.ErrUnexpectedEOF, 0, EIO},
		{errors.New("who knows"), 0, EIO},
		{syscall.ENXIO, 0, EIO},
	}
	for _, tc := range tests {
		if got := errnoOf(tc.err, tc.flags); got != tc.want {
			t.Errorf("errnoOf(%v, %#x) = %d, want %d", tc.err, tc.flags, got, tc.want)
		}
	}
	if !errors.Is(&Error{Op: "read", Errno: EIO}, syscall.EIO) || errors.Is(EIO, syscall.EINVAL) {
		t.Error("Errno does not match its syscall.Errno")
	}
	if !errors.Is(ENOTSUP, syscall.EOPNOTSUPP) {
		t.Error("ENOTSUP does not match EOPNOTSUPP")
	}
}

func TestMatchMeta(t *testing.T) {
	avail := []string{BaseAllocation, "daxstack:badblocks", "daxstack:other", "x-a:b"}
	tests := []struct {
		queries []string
		list    bool
		want    string
	}{
		{nil, true, "[base:allocation daxstack:badblocks daxstack:other x-a:b]"},
		{nil, false, "[]"},
		{[]string{"base:"}, true, "[base:allocation]"},
		{[]string{"base:"}, false, "[]"},
		{[]string{"daxstack:"}, true, "[daxstack:badblocks daxstack:other]"},
		{[]string{"daxstack:"}, false, "[]"},
		{[]string{"daxstack:badblocks", "daxstack:badblocks"}, false, "[daxstack:badblocks]"},
		{[]string{"base:allocation", "qemu:dirty-bitmap:x", "daxstack:nosuch"}, false, "[base:allocation]"},
		{[]string{"x-a:"}, true, "[x-a:b]"},
		{[]string{"x-a:b"}, false, "[x-a:b]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(matchMeta(avail, tc.queries, tc.list)); got != tc.want {
			t.Errorf("matchMeta(%q, list %v) = %s, want %s", tc.queries, tc.list, got, tc.want)
		}
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want string // the URI's fields, or "error"
	}{
		{"nbd://example.com/disk", "{false tcp example.com:10809 disk}"},
		{"nbd://example.com", "{false tcp example.com:10809 }"},
		{"nbd://127.0.0.1:10810/", "{false tcp 127.0.0.1:10810 }"},
		{"nbd://[::1]:7/a%20b", "{false tcp [::1]:7 a b}"},
		{"nbd+tcp://h/x/y", "{false tcp h:10809 x/y}"},
		{"nbds://h:1/e", "{true tcp h:1 e}"},
		{"nbd+unix:///e?socket=/run/daxstack/nbd.sock", "{false unix /run/daxstack/nbd.sock e}"},
		{"nbd+unix:///?socket=s", "{false unix s }"},
		{"nbds+unix:///top?socket=%2Frun%2Fx", "{true unix /run/x top}"},
		{"NBD://h/e", "{false tcp h:10809 e}"},
		{"nbd://h:0/", "error"},
		{"nbd://h:65536/", "error"},
		{"nbd://h:/", "error"},
		{"nbd://h:x/", "error"},
		{"nbd:///e", "error"},
		{"nbd://::1/e", "error"},
		{"nbd://u@h/e", "error"},
		{"nbd://h/e#f", "error"},
		{"nbd://h/e?socket=s", "error"},
		{"nbd+unix://h/e?socket=s", "error"},
		{"nbd+unix:///e", "error"},
		{"nbd+unix:///e?socket=", "error"},
		{"nbd+unix:///e?socket=a&socket=b", "error"},
		{"nbd+unix:///e?socket=a&tls=1", "error"},
		{"nbd+rdma://h/e", "error"},
		{"http://h/e", "error"},
		{"nbd:h/e", "error"},
		{"nbd://h/a%00b", "error"},
	}
	for _, tc := range tests {
		u, err := ParseURI(tc.in)
		got := "error"
		if err == nil {
			got = fmt.Sprintf("%v", *u)
		}
		if got != tc.want {
			t.Errorf("ParseURI(%q) = %s (%v), want %s", tc.in, got, err, tc.want)
		}
	}
	u := &URI{Network: "unix", Address: "/run/a b", Export: "x/y?z"}
	if s := u.String(); s != "nbd+unix:///x/y%3Fz?socket=/run/a+b" {
		t.Errorf("String() = %q", s)
	}
}
