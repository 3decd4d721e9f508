package linux

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Mount
		err  string
	}{
		{
			name: "proc(5) example",
			in:   "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
			want: []Mount{{ID: 36, Parent: 35, Dev: Dev{98, 0}, Root: "/mnt1", Point: "/mnt2", Options: "rw,noatime",
				Optional: []string{"master:1"}, FSType: "ext3", Source: "/dev/root", SuperOptions: "rw,errors=continue"}},
		},
		{
			name: "no optional fields, several lines",
			in:   "22 27 0:21 / /proc rw,relatime - proc proc rw\n25 24 0:23 / /dev/shm rw,relatime shared:3 unbindable - tmpfs tmpfs rw,size=1k\n",
			want: []Mount{
				{ID: 22, Parent: 27, Dev: Dev{0, 21}, Root: "/", Point: "/proc", Options: "rw,relatime", FSType: "proc", Source: "proc", SuperOptions: "rw"},
				{ID: 25, Parent: 24, Dev: Dev{0, 23}, Root: "/", Point: "/dev/shm", Options: "rw,relatime", Optional: []string{"shared:3", "unbindable"},
					FSType: "tmpfs", Source: "tmpfs", SuperOptions: "rw,size=1k"},
			},
		},
		{
			name: "escaped space, tab, newline and backslash",
			in:   `90 1 7:3 / /mnt/a\040b\011c\012d\134e rw - ext4 /dev/loop3 rw` + "\n",
			want: []Mount{{ID: 90, Parent: 1, Dev: Dev{7, 3}, Root: "/", Point: "/mnt/a b\tc\nd\\e", Options: "rw",
				FSType: "ext4", Source: "/dev/loop3", SuperOptions: "rw"}},
		},
		{name: "empty", in: "", want: nil},
		{name: "missing separator", in: "1 2 3:4 / /x rw ext4 /dev/x rw\n", err: "line 1"},
		{name: "too few after separator", in: "1 2 3:4 / /x rw - ext4 /dev/x\n", err: "line 1"},
		{name: "too many after separator", in: "1 2 3:4 / /x rw - ext4 /dev/x rw extra\n", err: "line 1"},
		{name: "bad id", in: "x 2 3:4 / /x rw - ext4 /dev/x rw\n", err: "mount id"},
		{name: "bad device", in: "1 2 3-4 / /x rw - ext4 /dev/x rw\n", err: "major:minor"},
		{name: "device out of range", in: "1 2 4096:0 / /x rw - ext4 /dev/x rw\n", err: "out of range"},
		{name: "bad escape", in: `1 2 3:4 / /x\09 rw - ext4 /dev/x rw` + "\n", err: "escape"},
		{name: "truncated escape", in: `1 2 3:4 / /x\04 rw - ext4 /dev/x rw` + "\n", err: "truncated"},
		{name: "escape above a byte", in: `1 2 3:4 / /x\777 rw - ext4 /dev/x rw` + "\n", err: "escape"},
		{name: "second line bad", in: "22 27 0:21 / /proc rw - proc proc rw\nnonsense\n", err: "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				if got != nil {
					t.Errorf("got %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// The mount table of this process parses, and has the root.
func TestMountsSelf(t *testing.T) {
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := MountAt("/"); err != nil || !ok {
		t.Errorf("MountAt(/) = %v, %v; mounts %v", ok, err, ms)
	}
}

func TestParseDev(t *testing.T) {
	tests := []struct {
		in   string
		want Dev
		ok   bool
	}{
		{"7:0", Dev{7, 0}, true},
		{"259:1048575", Dev{259, 1<<20 - 1}, true},
		{"4095:0", Dev{4095, 0}, true},
		{"4096:0", Dev{}, false},
		{"1:1048576", Dev{}, false},
		{"7", Dev{}, false},
		{"7:", Dev{}, false},
		{":0", Dev{}, false},
		{"-1:0", Dev{}, false},
		{"7:0:1", Dev{}, false},
		{"0x7:0", Dev{}, false},
	}
	for _, tc := range tests {
		got, err := ParseDev(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDev(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("ParseDev(%q).String() = %q", tc.in, got.String())
		}
		if err == nil && DevOf(got.Rdev()) != got {
			t.Errorf("DevOf(Rdev(%v)) = %v", got, DevOf(got.Rdev()))
		}
	}
}

// FuzzParseMountinfo: no input panics; what parses has mountinfo's shape,
// and a line printed back from a parsed mount (escaping as the kernel
// does) parses to the same mount.
func FuzzParseMountinfo(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n")
	f.Add(`90 1 7:3 / /mnt/a\040b rw - ext4 /dev/loop3 rw` + "\n")
	f.Add("1 2 3:4 / /x rw - ext4 /dev/x\n")
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := ParseMountinfo(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range ms {
			line := formatMount(m)
			again, err := ParseMountinfo(strings.NewReader(line + "\n"))
			if err != nil || len(again) != 1 {
				t.Fatalf("%q parsed to %+v, printed %q, which parses to %v, %v", in, m, line, again, err)
			}
			if !reflect.DeepEqual(again[0], m) {
				t.Fatalf("round trip of %+v gave %+v", m, again[0])
			}
		}
	})
}

func formatMount(m Mount) string {
	f := []string{itoa(m.ID), itoa(m.Parent), m.Dev.String(), escapeMount(m.Root), escapeMount(m.Point), m.Options}
	f = append(f, m.Optional...)
	f = append(f, "-", m.FSType, escapeMount(m.Source), m.SuperOptions)
	return strings.Join(f, " ")
}

func itoa(i int) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// escapeMount is the kernel's mangle() of show_mountinfo: space, tab,
// newline and backslash as octal escapes.
func escapeMount(s string) string {
	r := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`)
	return r.Replace(s)
}
