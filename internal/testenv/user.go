package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
	"time"
)

// User is an unprivileged account made for one test (NewUser).
type User struct {
	Name     string
	UID, GID uint32 // GID: its own group, made with it
}

// NewUser creates an unprivileged system user with a group of its own and
// no home, for the test only, and removes both when the test ends. It
// needs root (NeedRoot) and useradd.
func NewUser(t testing.TB, prefix string) User {
	t.Helper()
	NeedRoot(t)
	NeedCommand(t, "useradd")
	NeedCommand(t, "userdel")
	b := make([]byte, 4)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	var out []byte
	var err error
	for try := 0; try < 20; try++ { // another test may hold the passwd lock
		out, err = exec.Command("useradd", "--system", "--no-create-home", "--user-group",
			"--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for try := 0; try < 20; try++ {
			out, err := exec.Command("userdel", name).CombinedOutput()
			if err == nil {
				return
			}
			if try == 19 {
				t.Errorf("userdel %s: %v\n%s", name, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return User{Name: name, UID: uint32(uid), GID: uint32(gid)}
}
