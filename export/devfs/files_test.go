package devfs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func stat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestAttributes(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "auto", Attr{Size: 3 << 20})
	add(t, fs, "pinned", Attr{Size: 1<<20 + 512, Ino: 777})
	st := stat(t, fs.Path("pinned"))
	want := unix.Stat_t{Mode: syscall.S_IFREG | 0o660, Uid: 0, Gid: testGroup, Size: 1<<20 + 512, Ino: 777, Nlink: 1}
	if st.Mode != want.Mode || st.Uid != want.Uid || st.Gid != want.Gid || st.Size != want.Size || st.Ino != want.Ino || st.Nlink != 1 {
		t.Errorf("stat: mode %o uid %d gid %d size %d ino %d nlink %d; want mode %o uid 0 gid %d size %d ino 777 nlink 1",
			st.Mode, st.Uid, st.Gid, st.Size, st.Ino, st.Nlink, want.Mode, testGroup, want.Size)
	}
	if st.Dev != fs.Dev() {
		t.Errorf("st_dev %d, FS.Dev %d", st.Dev, fs.Dev())
	}
	a := stat(t, fs.Path("auto"))
	if a.Ino == 0 || a.Ino == 1 || a.Ino == 777 || a.Size != 3<<20 {
		t.Errorf("auto: ino %d size %d", a.Ino, a.Size)
	}
	root := stat(t, fs.Dir())
	if root.Mode != syscall.S_IFDIR|0o755 || root.Uid != 0 {
		t.Errorf("root: mode %o uid %d", root.Mode, root.Uid)
	}
	ents, err := os.ReadDir(fs.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"auto", "pinned"}) {
		t.Errorf("listing %v", names)
	}
	got := fs.List()
	if len(got) != 2 || got[0].Name != "auto" || got[1].Name != "pinned" || got[1].Ino != 777 || got[1].Size != 1<<20+512 {
		t.Errorf("List = %+v", got)
	}
	s := fs.Settings()
	if !s.AsyncDIO || s.MaxWrite != DefaultMaxWrite || s.MaxBackground != DefaultMaxBackground {
		t.Errorf("settings %+v", s)
	}
}

func TestAddRefusals(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20, Ino: 50})
	tests := []struct {
		name string
		a    Attr
		want error
	}{
		{"a", Attr{Size: 1}, ErrExists},
		{"b", Attr{Size: 1, Ino: 50}, ErrExists},
		{"b", Attr{Size: 1, Ino: 1}, ErrInvalid},
		{"b", Attr{Size: -1}, ErrInvalid},
		{"", Attr{}, ErrInvalid},
		{".", Attr{}, ErrInvalid},
		{"..", Attr{}, ErrInvalid},
		{"x/y", Attr{}, ErrInvalid},
		{"x\x00y", Attr{}, ErrInvalid},
		{string(make([]byte, 256)), Attr{}, ErrInvalid},
	}
	for _, tc := range tests {
		if err := fs.Add(tc.name, d, tc.a); !errors.Is(err, tc.want) {
			t.Errorf("Add(%q, %+v) = %v, want %v", tc.name, tc.a, err, tc.want)
		}
	}
	if got := fs.List(); len(got) != 1 {
		t.Errorf("refusals left %+v", got)
	}
	if _, err := os.Stat(fs.Path("b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat b: %v", err)
	}
}

// Clients can't change the directory: only daxstack renames and removes.
func TestClientsCannotChangeTheDirectory(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "a", Attr{Size: 1 << 20})
	checks := []struct {
		what string
		err  error
	}{
		{"rename", os.Rename(fs.Path("a"), fs.Path("b"))},
		{"unlink", os.Remove(fs.Path("a"))},
		{"create", os.WriteFile(fs.Path("new"), nil, 0o600)},
		{"mkdir", os.Mkdir(fs.Path("d"), 0o755)},
		{"symlink", os.Symlink("a", fs.Path("l"))},
		{"link", os.Link(fs.Path("a"), fs.Path("h"))},
		{"chmod", os.Chmod(fs.Path("a"), 0o666)},
		{"chown", os.Chown(fs.Path("a"), 1, 1)},
		{"truncate", os.Truncate(fs.Path("a"), 4096)},
	}
	for _, c := range checks {
		if !errors.Is(c.err, syscall.EPERM) {
			t.Errorf("%s: %v, want EPERM", c.what, c.err)
		}
	}
	if got := fs.List(); len(got) != 1 || got[0].Name != "a" || got[0].Size != 1<<20 {
		t.Errorf("after refusals: %+v", got)
	}
	// Times can be set; open(O_TRUNC) is ignored as on a block device.
	if err := os.Chtimes(fs.Path("a"), unixTime(100), unixTime(200)); err != nil {
		t.Errorf("chtimes: %v", err)
	}
	if st := stat(t, fs.Path("a")); st.Mtim.Sec != 200 || st.Atim.Sec != 100 {
		t.Errorf("times %v %v", st.Atim, st.Mtim)
	}
	f, err := os.OpenFile(fs.Path("a"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("open O_TRUNC: %v", err)
	}
	f.Close()
	if st := stat(t, fs.Path("a")); st.Size != 1<<20 {
		t.Errorf("size after O_TRUNC %d", st.Size)
	}
}

func TestRename(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	add(t, fs, "c", Attr{Size: 1 << 20})
	before := stat(t, fs.Path("a"))
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	if err := fs.Rename("a", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fs.Path("a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old name: %v", err)
	}
	after := stat(t, fs.Path("b"))
	if after.Ino != before.Ino {
		t.Errorf("inode %d became %d", before.Ino, after.Ino)
	}
	if _, err := f.WriteAt([]byte("still"), 0); err != nil {
		t.Errorf("write on a file opened before the rename: %v", err)
	}
	got := make([]byte, 5)
	d.File().ReadAt(got, 0)
	if string(got) != "still" {
		t.Errorf("device has %q", got)
	}
	for _, tc := range []struct {
		old, new string
		want     error
	}{
		{"b", "c", ErrExists},
		{"nope", "x", ErrNotFound},
		{"b", "", ErrInvalid},
		{"b", "x/y", ErrInvalid},
	} {
		if err := fs.Rename(tc.old, tc.new); !errors.Is(err, tc.want) {
			t.Errorf("Rename(%q, %q) = %v, want %v", tc.old, tc.new, err, tc.want)
		}
	}
	if name, ok := fs.ResolveIno(before.Ino); !ok || name != "b" {
		t.Errorf("ResolveIno = %q, %v", name, ok)
	}
}

func TestResize(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	if err := d.Resize(4 << 20); err != nil {
		t.Fatal(err)
	}
	d.File().WriteAt([]byte("far"), 3<<20)
	if err := fs.Resize("a", 4<<20); err != nil {
		t.Fatal(err)
	}
	if st := stat(t, fs.Path("a")); st.Size != 4<<20 {
		t.Errorf("size %d right after Resize", st.Size)
	}
	var fst unix.Stat_t
	unix.Fstat(int(f.Fd()), &fst)
	if fst.Size != 4<<20 {
		t.Errorf("fstat of an open file: %d", fst.Size)
	}
	got := make([]byte, 3)
	if _, err := f.ReadAt(got, 3<<20); err != nil || string(got) != "far" {
		t.Errorf("read past the old end: %q, %v", got, err)
	}
	if err := fs.Resize("a", 512); err != nil {
		t.Fatal(err)
	}
	if n, err := f.ReadAt(make([]byte, 1024), 0); n != 512 {
		t.Errorf("read after shrink: %d, %v", n, err)
	}
	if err := fs.Resize("a", -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative size: %v", err)
	}
	if err := fs.Resize("nope", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
}

func TestUsersAndRemove(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "a", Attr{Size: 1 << 20})
	in, err := fs.OpenInternal("a", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if i, _ := fs.Lookup("a"); i.Users != 0 || i.Opens != 1 {
		t.Errorf("after an internal open: %+v", i)
	}
	f, err := os.Open(fs.Path("a"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := fs.Users("a"); n != 1 {
		t.Errorf("users %d after a client's open", n)
	}
	err = fs.Remove("a", false)
	var be *BusyError
	if !errors.As(err, &be) || be.Users != 1 || !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Remove with a user: %v", err)
	}
	if _, err := os.Stat(fs.Path("a")); err != nil {
		t.Errorf("refused remove took the file: %v", err)
	}
	f.Close()
	eventually(t, "without users", func() bool { n, _ := fs.Users("a"); return n == 0 })
	if err := fs.Remove("a", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fs.Path("a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed file: %v", err)
	}
	// The internal file stays open, and fails its I/O.
	if _, err := in.ReadAt(make([]byte, 512), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a removed device: %v, want EIO", err)
	}
	if err := fs.Remove("a", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	// The name is free again, for a new device.
	add(t, fs, "a", Attr{Size: 2 << 20})
	if st := stat(t, fs.Path("a")); st.Size != 2<<20 {
		t.Errorf("new a: %d", st.Size)
	}
}

func TestForcedRemove(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	if err := fs.Remove("a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after a forced remove: %v, want EIO", err)
	}
}

func TestResolve(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "a", Attr{Size: 1 << 20})
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(fs.Path("a"), link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fs.Path("a"), fs.Dir() + "/./a", link} {
		if name, ok := fs.Resolve(p); !ok || name != "a" {
			t.Errorf("Resolve(%q) = %q, %v", p, name, ok)
		}
	}
	for _, p := range []string{fs.Path("b"), fs.Dir(), "/dev/null", link + "x", "a"} {
		if name, ok := fs.Resolve(p); ok {
			t.Errorf("Resolve(%q) = %q", p, name)
		}
	}
}

// A directory served by a live daemon is not taken over.
func TestMountRefusesALiveMount(t *testing.T) {
	fs := mount(t, Options{})
	if other, err := Mount(fs.Dir(), Options{}); !errors.Is(err, ErrMounted) {
		if err == nil {
			other.Close()
		}
		t.Errorf("second Mount on %s: %v, want ErrMounted", fs.Dir(), err)
	}
	add(t, fs, "a", Attr{Size: 512})
	if _, err := os.Stat(fs.Path("a")); err != nil {
		t.Errorf("the first mount after a refused second: %v", err)
	}
}
