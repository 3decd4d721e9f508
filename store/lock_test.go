package store_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/store"
)

func TestErrLockedText(t *testing.T) {
	if got, want := store.ErrLocked.Error(), "database is locked by another daxstack process"; got != want {
		t.Errorf("ErrLocked says %q, want %q", got, want)
	}
}

// TestLocking opens the database while it is open elsewhere, in this
// process and in a child process: read-only opens share the lock, every
// other pair conflicts, and the second opener gives up after about its
// Timeout with ErrLocked. None of it writes to the file.
func TestLocking(t *testing.T) {
	const timeout = 300 * time.Millisecond
	type side struct {
		child, ro bool
	}
	cases := []struct {
		name           string
		holder, opener side
		locked         bool
	}{
		{"rw then rw, one process", side{}, side{}, true},
		{"rw then ro, one process", side{}, side{ro: true}, true},
		{"ro then rw, one process", side{ro: true}, side{}, true},
		{"ro then ro, one process", side{ro: true}, side{ro: true}, false},
		{"rw here, rw in a child", side{}, side{child: true}, true},
		{"rw here, ro in a child", side{}, side{child: true, ro: true}, true},
		{"ro here, rw in a child", side{ro: true}, side{child: true}, true},
		{"ro here, ro in a child", side{ro: true}, side{child: true, ro: true}, false},
		{"rw in a child, rw here", side{child: true}, side{}, true},
		{"ro in a child, rw here", side{child: true, ro: true}, side{}, true},
		{"ro in a child, ro here", side{child: true, ro: true}, side{ro: true}, false},
	}
	rwro := func(ro bool) string {
		if ro {
			return "ro"
		}
		return "rw"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := newDB(t)
			before := testenv.StateOf(t, path)

			// The holder.
			var release func()
			if tc.holder.child {
				c := startChild(t, "open", path, "5s", rwro(tc.holder.ro), "hold")
				if l := c.next(t); l != "open" {
					t.Fatalf("holder: %q", l)
				}
				release = func() {
					if lines, err := c.rest(); err != nil || len(lines) != 0 {
						t.Errorf("holder: %v, %q", err, lines)
					}
				}
			} else {
				db, err := store.Open(path, store.Options{ReadOnly: tc.holder.ro, Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				release = func() {
					if err := db.Close(); err != nil {
						t.Error(err)
					}
				}
			}

			// The second opener.
			var gotLocked bool
			var elapsed time.Duration
			if tc.opener.child {
				c := startChild(t, "open", path, timeout.String(), rwro(tc.opener.ro), "close")
				l := c.next(t)
				switch f := strings.Fields(l); {
				case l == "open":
				case len(f) == 2 && f[0] == "locked":
					gotLocked = true
					ns, _ := strconv.ParseInt(f[1], 10, 64)
					elapsed = time.Duration(ns)
				default:
					t.Fatalf("opener: %q", l)
				}
				if _, err := c.rest(); err != nil {
					t.Errorf("opener: %v", err)
				}
			} else {
				start := time.Now()
				db, err := store.Open(path, store.Options{ReadOnly: tc.opener.ro, Timeout: timeout})
				elapsed = time.Since(start)
				switch {
				case err == nil:
					db.Close()
				case errors.Is(err, store.ErrLocked):
					gotLocked = true
					if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), path) ||
						!strings.Contains(err.Error(), "database is locked by another daxstack process") {
						t.Errorf("the error %q should name the path and wrap bbolt's timeout", err)
					}
				default:
					t.Fatalf("opener: %v", err)
				}
			}
			if gotLocked != tc.locked {
				t.Fatalf("second open locked out: %v, want %v", gotLocked, tc.locked)
			}
			if tc.locked && (elapsed < timeout-100*time.Millisecond || elapsed > timeout+3*time.Second) {
				t.Errorf("gave up after %v with a timeout of %v", elapsed, timeout)
			}

			// Once the holder lets go, a writer gets in.
			release()
			db, err := store.Open(path, store.Options{Timeout: time.Second})
			if err != nil {
				t.Fatalf("after the holder closed: %v", err)
			}
			db.Close()
			testenv.SameState(t, path, before, "opening and closing")
		})
	}
}
