// Package e2e drives the built daxstack binary the way an admin or a
// script would: testscript files under testdata/script, and Go tests for
// what a script cannot express (daemons, real loop devices and uevents,
// kill -9, concurrent processes).
package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/daxstack/daxstack/internal/testenv"
)

// bin is the daxstack binary built for the tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "daxstack-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "daxstack")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/daxstack")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building daxstack:", err)
		os.Exit(1)
	}
	// Daemons of tests export nothing unless a test asks (exports_*_test.go).
	os.Setenv("DAXSTACK_NO_EXPORTS", "1")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips a test that needs root, unless DAXSTACK_REQUIRE_ROOT=1
// (CI), where not being able to run it is a failure.
func requireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") == "1",
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("DAXSTACK_DB", filepath.Join(env.WorkDir, "daxstack.db"))
			env.Setenv("DAXSTACK_SOCKET", filepath.Join(env.WorkDir, "daxstack.sock"))
			env.Setenv("DAXSTACK_SYSFS", filepath.Join(env.WorkDir, "sys"))
			env.Setenv("LANG", "C.UTF-8")
			env.Setenv("DAXSTACK_NO_EXPORTS", "1")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				if os.Geteuid() != 0 && os.Getenv("DAXSTACK_REQUIRE_ROOT") == "1" {
					return false, fmt.Errorf("[root] script needs root and DAXSTACK_REQUIRE_ROOT=1")
				}
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// mkleaf FILE SECTORS: a sparse file of that many sectors.
			"mkleaf": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: mkleaf FILE SECTORS")
				}
				n, err := strconv.ParseInt(args[1], 10, 64)
				ts.Check(err)
				f, err := os.Create(ts.MkAbs(args[0]))
				ts.Check(err)
				ts.Check(f.Truncate(n * 512))
				ts.Check(f.Close())
			},
			// dbsum save|same|changed: the database file's checksum, to
			// prove a refused command leaves it byte-for-byte as it was.
			"dbsum": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: dbsum save|same|changed")
				}
				b, err := os.ReadFile(ts.Getenv("DAXSTACK_DB"))
				ts.Check(err)
				sum := sha256.Sum256(b)
				cur := hex.EncodeToString(sum[:])
				switch args[0] {
				case "save":
					ts.Setenv("DBSUM", cur)
				case "same":
					if cur != ts.Getenv("DBSUM") {
						ts.Fatalf("database changed")
					}
				case "changed":
					if cur == ts.Getenv("DBSUM") {
						ts.Fatalf("database did not change")
					}
				default:
					ts.Fatalf("dbsum: unknown %q", args[0])
				}
			},
		},
	})
}

var _ = runtime.GOOS
