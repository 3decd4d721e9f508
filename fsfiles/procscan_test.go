package fsfiles

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

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
