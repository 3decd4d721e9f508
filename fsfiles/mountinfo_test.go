package fsfiles

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A mountinfo as the kernel writes it (proc(5)'s example, a bind mount, a
// path with every escaped character, several optional fields, none).
const sampleMountInfo = `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
22 1 7:0 / /mnt/fs rw,relatime shared:1 - xfs /dev/loop0 rw,attr2,inode64,logbufs=8,logbsize=32k,noquota
23 22 7:0 /sub/dir /srv/bind rw,relatime shared:1 master:3 propagate_from:2 - xfs /dev/loop0 rw,attr2
24 1 7:0 / /mnt/with\040space\011tab\012nl\134bs ro,relatime - xfs /dev/loop0 rw
25 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
`

func TestParseMountInfo(t *testing.T) {
	ms, err := ParseMountInfo([]byte(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 36, Parent: 35, Major: 98, Minor: 0, Root: "/mnt1", Point: "/mnt2", Options: "rw,noatime", Optional: []string{"master:1"},
			FSType: "ext3", Source: "/dev/root", SuperOptions: "rw,errors=continue"},
		{ID: 22, Parent: 1, Major: 7, Minor: 0, Root: "/", Point: "/mnt/fs", Options: "rw,relatime", Optional: []string{"shared:1"},
			FSType: "xfs", Source: "/dev/loop0", SuperOptions: "rw,attr2,inode64,logbufs=8,logbsize=32k,noquota"},
		{ID: 23, Parent: 22, Major: 7, Minor: 0, Root: "/sub/dir", Point: "/srv/bind", Options: "rw,relatime",
			Optional: []string{"shared:1", "master:3", "propagate_from:2"}, FSType: "xfs", Source: "/dev/loop0", SuperOptions: "rw,attr2"},
		{ID: 24, Parent: 1, Major: 7, Minor: 0, Root: "/", Point: "/mnt/with space\ttab\nnl\\bs", Options: "ro,relatime",
			FSType: "xfs", Source: "/dev/loop0", SuperOptions: "rw"},
		{ID: 25, Parent: 1, Major: 0, Minor: 22, Root: "/", Point: "/proc", Options: "rw,nosuid,nodev,noexec,relatime",
			FSType: "proc", Source: "proc", SuperOptions: "rw"},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d mounts, want %d", len(ms), len(want))
	}
	for i := range want {
		if fmt.Sprint(ms[i]) != fmt.Sprint(want[i]) {
			t.Errorf("line %d:\n got %+v\nwant %+v", i+1, ms[i], want[i])
		}
	}
	of := MountsOf(ms, 7, 0)
	if len(of) != 3 {
		t.Fatalf("MountsOf(7:0) = %d mounts, want 3", len(of))
	}
	// The root mounts first, in mountinfo order, then the bind mount.
	var ids []int
	for _, m := range rankMounts(of) {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []int{22, 24, 23}) {
		t.Errorf("rank %v, want [22 24 23]", ids)
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	for _, line := range []string{
		"36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root",             // super options missing
		"36 35 98:0 /mnt1 /mnt2 rw ext3 /dev/root rw",            // no separator
		"x 35 98:0 / /m rw - ext3 /dev/root rw",                  // ID
		"36 35 98-0 / /m rw - ext3 /dev/root rw",                 // device
		"36 35 98:0 / /m\\04 rw - ext3 /dev/root rw",             // short escape
		"36 35 98:0 / /m\\999 rw - ext3 /dev/root rw",            // not octal
		"36 35 98:0 / /m rw - ext3 /dev/root rw extra",           // a field too many after "-"
		"36 35 4294967296:0 / /m rw - ext3 /dev/root rw",         // major past 32 bits
		"36 35 98:0  /m rw - ext3 /dev/root rw",                  // empty root
		"36 -35 98:0 / /m rw - ext3 /dev/root rw",                // negative parent
		"36 35 98:0 / /m rw opt - ext3 /dev/root rw - x y z",     // two separators
		"36 35 98:0 / /m rw opt - ext3 /dev/root rw\n\n37 1 0:1", // good then short
	} {
		ms, err := ParseMountInfo([]byte(line))
		if !errors.Is(err, ErrMalformed) || ms != nil {
			t.Errorf("%q: %v, %v; want ErrMalformed and nothing", line, ms, err)
		}
	}
}

// formatMountLine writes m back as the kernel would.
func formatMountLine(m Mount) string {
	f := []string{fmt.Sprint(m.ID), fmt.Sprint(m.Parent), fmt.Sprintf("%d:%d", m.Major, m.Minor), escapeMount(m.Root), escapeMount(m.Point), m.Options}
	f = append(f, m.Optional...)
	f = append(f, "-", m.FSType, escapeMount(m.Source), m.SuperOptions)
	return strings.Join(f, " ")
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte(sampleMountInfo))
	f.Add([]byte("1 1 1:1 / / a - b c d\n"))
	f.Add([]byte("1 1 1:1 /\\040 / a b c - d e f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseMountInfo(data)
		if err != nil {
			if ms != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v with mounts %v", err, ms)
			}
			return
		}
		// What parses formats back to lines that parse to the same.
		var lines []string
		for _, m := range ms {
			if m.Root == "" || m.Point == "" || m.FSType == "" {
				t.Fatalf("parsed a mount with an empty field: %+v", m)
			}
			lines = append(lines, formatMountLine(m))
		}
		again, err := ParseMountInfo([]byte(strings.Join(lines, "\n")))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(ms) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, ms, again)
		}
	})
}
