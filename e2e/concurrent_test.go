package e2e

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriters runs 16 processes at once, each running mutating
// daxstack commands one after another against one database (created by
// whichever starts first) with a short lock timeout: each creates
// dev-P-i over a shared leaf and removes, now and then, one of its own
// devices that it created. Every command must either succeed or fail with
// exactly the lock error and exit status 1, and the final state must be
// the successful creates minus the successful removes, each device with the
// table it was created with.
func TestConcurrentWriters(t *testing.T) {
	const workers = 16
	perWorker := 12
	if testing.Short() {
		perWorker = 5
	}
	s := newSandbox(t)
	const timeout = 60 * time.Millisecond
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT="+timeout.String())
	leaf := s.file("leaf.img", workers*int64(perWorker)*8*512)
	lockErr := regexp.MustCompile(`\Adaxstack: store: ` + regexp.QuoteMeta(s.path("daxstack.db")) +
		`: database is locked by another daxstack process \(gave up after ` + regexp.QuoteMeta(timeout.String()) + `: timeout\)\nCommand failed\.\n\z`)

	type outcome struct {
		created    map[string]string // name -> table, successful creates not removed since
		ok, locked int
	}
	outcomes := make([]outcome, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for p := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 16))
			o := outcome{created: map[string]string{}}
			for i := range perWorker {
				var args []string
				var name, table string
				remove := len(o.created) > 0 && rng.IntN(3) == 0
				if remove {
					names := slices.Sorted(func(yield func(string) bool) {
						for n := range o.created {
							if !yield(n) {
								return
							}
						}
					})
					name = names[rng.IntN(len(names))]
					args = []string{"remove", name}
				} else {
					name = fmt.Sprintf("dev-%d-%d", p, i)
					table = fmt.Sprintf("0 8 linear %s %d", leaf, (p*perWorker+i)*8)
					args = []string{"create", name, "--table", table}
				}
				r := s.runKill(-1, args...)
				switch {
				case r.code == 0:
					o.ok++
					if remove {
						delete(o.created, name)
					} else {
						o.created[name] = table
					}
				case r.code == 1 && lockErr.MatchString(r.stderr) && r.stdout == "":
					o.locked++
				default:
					mu.Lock()
					errs = append(errs, fmt.Sprintf("daxstack %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr))
					mu.Unlock()
				}
			}
			outcomes[p] = o
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	want := map[string]string{}
	ok, locked := 0, 0
	for _, o := range outcomes {
		for n, tab := range o.created {
			want[n] = tab
		}
		ok += o.ok
		locked += o.locked
	}
	t.Logf("%d commands: %d succeeded, %d refused with the lock error", workers*perWorker, ok, locked)
	if ok == 0 {
		t.Fatalf("no command succeeded")
	}

	rows, err := report[lsRow](s.run("ls", "--reportformat", "json"), "device")
	if err != nil {
		t.Fatal(err)
	}
	minors := map[uint32]string{}
	var got []string
	for _, r := range rows {
		got = append(got, r.Name)
		if other, dup := minors[r.Minor]; dup {
			t.Errorf("%s and %s both have minor %d", other, r.Name, r.Minor)
		}
		minors[r.Minor] = r.Name
	}
	wantNames := slices.Sorted(func(yield func(string) bool) {
		for n := range want {
			if !yield(n) {
				return
			}
		}
	})
	if !slices.Equal(got, wantNames) {
		t.Fatalf("devices:\n got %v\nwant %v", got, wantNames)
	}
	tables, err := report[obsRow](s.run("table", "--reportformat", "json"), "table")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != len(want) {
		t.Fatalf("%d table rows for %d devices", len(tables), len(want))
	}
	for _, r := range tables {
		if line := fmt.Sprintf("%d %d %s %s", r.Start, r.Length, r.Target, r.Params); line != want[r.Device] {
			t.Errorf("%s: table %q, want %q", r.Device, line, want[r.Device])
		}
	}
}
