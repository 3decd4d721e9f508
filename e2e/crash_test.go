package e2e

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var crashSeed = flag.Uint64("crash.seed", 0, "seed of TestCrashKill9's command sequences (0: from the clock)")

// Sizes of TestCrashKill9.
const (
	crashLeafSectors = 4096
	crashLeaves      = 3
	crashMaxDevs     = 10
)

// TestCrashKill9 runs random sequences of mutating daxstack commands in
// embedded mode (create with linear, striped and error segments over file
// leaves and over other mapped devices, load + resume, suspend, resume,
// remove, rename, inject, error-range, good-range) and sends SIGKILL to
// about half of them at a random moment of their run, which includes the
// commit: the delay is drawn around how long that kind of command has been
// taking. After every kill it checks, through the binary, that the
// database opens (ls), that every stored table still loads (info's health
// is never "broken", and table and table --inactive exit 0 for all
// devices), and that the state is exactly the model of the commands that
// exited 0, with the killed command either applied or not, nothing else:
// names, minors, UUIDs, live and inactive tables as printed, suspension,
// bad-sector counts per device (poison and error segments), and for a
// killed inject the leaves' own bad sectors. Each sequence ends with a full
// comparison including every leaf's poison. About 500 commands and 250
// kills (400 and 200 under -race), well within a minute; -short does less.
func TestCrashKill9(t *testing.T) {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -crash.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	sequences, commands := 10, 50
	if raceEnabled {
		// Race-built commands take about three times as long; this still
		// makes some 200 kills.
		commands = 40
	}
	if testing.Short() {
		sequences, commands = 3, 30
	}
	var st crashStats
	for i := range sequences {
		t.Run(fmt.Sprint("seq", i), func(t *testing.T) {
			crashSequence(t, rng, commands, &st)
		})
		if t.Failed() {
			break
		}
	}
	t.Logf("%d commands, %d kill attempts: %d killed (%d had committed, %d had not, %d indistinguishable), %d finished first",
		st.commands, st.attempts, st.killed, st.applied, st.notApplied, st.either, st.attempts-st.killed)
	if st.killed < st.attempts/4 {
		t.Errorf("only %d of %d kill attempts killed a running command: the test is not exercising crashes", st.killed, st.attempts)
	}
}

type crashStats struct {
	commands, attempts, killed, applied, notApplied, either int
}

// crashCmd is one command with the model of its success.
type crashCmd struct {
	kind  string
	args  []string
	apply func(m *model)
	// leaves whose own bad sectors tell whether a killed command committed.
	leaves []string
}

func crashSequence(t *testing.T, rng *rand.Rand, commands int, st *crashStats) {
	s := newSandbox(t)
	s.env = append(s.env, "DAXSTACK_LOCK_TIMEOUT=5s")
	var paths []string
	for i := range crashLeaves {
		paths = append(paths, s.file(fmt.Sprintf("leaf%d.img", i), crashLeafSectors*512))
	}
	m := newModel(paths, crashLeafSectors)
	ewma := map[string]time.Duration{} // how long each kind of command takes
	for range commands {
		c := genCrashCmd(rng, m)
		want := m.clone()
		c.apply(want)
		st.commands++
		kill := rng.IntN(2) == 0
		after := time.Duration(-1)
		if kill {
			d := ewma[c.kind]
			if d == 0 {
				d = 5 * time.Millisecond
			}
			// Late in the run is where the commit is; the start is
			// mostly exec and the runtime.
			after = time.Duration(float64(d) * (0.15 + 0.85*rng.Float64()))
			st.attempts++
		}
		r := s.runKill(after, c.args...)
		if !r.killed {
			if r.code != 0 {
				t.Fatalf("daxstack %s: exit %d\n%s", strings.Join(c.args, " "), r.code, r.stderr)
			}
			if d, ok := ewma[c.kind]; ok {
				ewma[c.kind] = (3*d + r.dur) / 4
			} else {
				ewma[c.kind] = r.dur
			}
			m = want
			if !kill {
				continue
			}
			// The kill came too late: check anyway that a finished
			// command's change is there.
		} else {
			st.killed++
		}
		o, err := s.observe(c.leaves)
		if err != nil {
			t.Fatalf("after killing daxstack %s: %v", strings.Join(c.args, " "), err)
		}
		pre, post := m.expect(c.leaves), want.expect(c.leaves)
		switch {
		case pre.same(post) && o.same(post):
			if r.killed {
				st.either++
			}
			m = want
		case o.same(post):
			if r.killed {
				st.applied++
			}
			m = want
		case o.same(pre) && r.killed:
			st.notApplied++
		case r.killed:
			t.Fatalf("after killing daxstack %s the state is neither before nor after it:\nvs after:\n%svs before:\n%s",
				strings.Join(c.args, " "), o.diff(post), o.diff(pre))
		default:
			t.Fatalf("daxstack %s exited 0 but its change is not (all) there:\n%s", strings.Join(c.args, " "), o.diff(post))
		}
	}
	// Finally every leaf's poison, through a device over all of them.
	var lines []string
	for i, p := range paths {
		lines = append(lines, fmt.Sprintf("%d %d linear %s 0", i*crashLeafSectors, crashLeafSectors, p))
	}
	name := fmt.Sprintf("check%d", m.nextNameNo)
	s.run("create", name, "--table", strings.Join(lines, "\n"))
	rows, err := report[rangeRow](s.run("badblocks", name, "--reportformat", "json"), "badblocks")
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range paths {
		for sec, p := range m.poison[i] {
			if p {
				want = append(want, uint64(i*crashLeafSectors+sec))
			}
		}
	}
	if got := rowSectors(rows, name); !slices.Equal(got, want) {
		t.Fatalf("poison of the leaves: got %v, want %v", got, want)
	}
	s.run("remove", name)
	o, err := s.observe(nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := m.expect(nil); !o.same(w) {
		t.Fatalf("final state:\n%s", o.diff(w))
	}
}

// genCrashCmd returns a random command that must succeed on m.
func genCrashCmd(rng *rand.Rand, m *model) crashCmd {
	devs := m.sorted()
	pick := func(ok func(d *mdev) bool) *mdev {
		var c []*mdev
		for _, d := range devs {
			if ok(d) {
				c = append(c, d)
			}
		}
		if len(c) == 0 {
			return nil
		}
		return c[rng.IntN(len(c))]
	}
	newName := func(prefix string) string {
		m.nextNameNo++
		return fmt.Sprintf("%s%d", prefix, m.nextNameNo)
	}
	for {
		switch k := rng.IntN(100); {
		case k < 22 && len(devs) < crashMaxDevs, len(devs) == 0:
			name := newName("d")
			size := 16 * uint64(1+rng.IntN(24))
			tab := genTable(rng, m, -1, size)
			args := []string{"create", name, "--table", m.text(tab)}
			uuid := ""
			if rng.IntN(3) == 0 {
				uuid = "UUID-" + name
				args = append(args, "-u", uuid)
			}
			return crashCmd{kind: "create", args: args, apply: func(m *model) {
				m.nextID++
				m.devs[m.nextID] = &mdev{id: m.nextID, name: name, uuid: uuid, minor: m.freeMinor(), size: size, active: tab}
			}}
		case k < 34:
			d := pick(func(*mdev) bool { return true })
			tab := genTable(rng, m, d.id, d.size)
			id := d.id
			return crashCmd{kind: "load", args: []string{"load", d.name, "--table", m.text(tab)}, apply: func(m *model) {
				d := m.devs[id]
				d.inactive, d.pristine, d.errs = tab, nil, nil
			}}
		case k < 48:
			d := pick(func(d *mdev) bool { return d.inactive != nil || d.suspended })
			if d == nil {
				continue
			}
			id := d.id
			return crashCmd{kind: "resume", args: []string{"resume", d.name}, apply: func(m *model) {
				d := m.devs[id]
				if d.inactive != nil {
					d.active, d.inactive = d.inactive, nil
				}
				d.suspended = false
			}}
		case k < 54:
			d := pick(func(d *mdev) bool { return !d.suspended })
			if d == nil {
				continue
			}
			id := d.id
			return crashCmd{kind: "suspend", args: []string{"suspend", d.name}, apply: func(m *model) { m.devs[id].suspended = true }}
		case k < 68:
			d := pick(func(d *mdev) bool { return !m.used(d) })
			if d == nil {
				continue
			}
			id := d.id
			return crashCmd{kind: "remove", args: []string{"remove", d.name}, apply: func(m *model) { delete(m.devs, id) }}
		case k < 76:
			d := pick(func(*mdev) bool { return true })
			name, id := newName("r"), d.id
			return crashCmd{kind: "rename", args: []string{"rename", d.name, name}, apply: func(m *model) { m.devs[id].name = name }}
		case k < 86:
			// Poison under a range of a device's live table, or of a leaf
			// a table uses.
			var c crashCmd
			c.kind = "inject"
			if d := pick(func(*mdev) bool { return true }); d != nil && rng.IntN(2) == 0 {
				sec := uint64(rng.IntN(int(d.size)))
				n := min(uint64(1+rng.IntN(8)), d.size-sec)
				id := d.id
				c.args = []string{"inject", d.name, "--sector", fmt.Sprint(sec), "--count", fmt.Sprint(n)}
				c.apply = func(m *model) {
					m.leafSectors(id, sec, n, func(leaf int, s uint64) { m.poison[leaf][s] = true })
				}
			} else {
				var used []int
				for i := range m.leaves {
					if m.leafUsed(i) {
						used = append(used, i)
					}
				}
				if len(used) == 0 {
					continue
				}
				leaf := used[rng.IntN(len(used))]
				sec := uint64(rng.IntN(crashLeafSectors - 8))
				n := uint64(1 + rng.IntN(8))
				c.args = []string{"inject", m.leaves[leaf], "--sector", fmt.Sprint(sec), "--count", fmt.Sprint(n)}
				c.apply = func(m *model) {
					for s := sec; s < sec+n; s++ {
						m.poison[leaf][s] = true
					}
				}
			}
			for i := range m.leaves {
				if m.leafUsed(i) {
					c.leaves = append(c.leaves, m.leaves[i])
				}
			}
			return c
		default:
			// error-range and good-range, at multiples of 16 sectors, so
			// that every cut of a striped segment is at whole stripe rows.
			d := pick(func(*mdev) bool { return true })
			sec := 16 * uint64(rng.IntN(int(d.size/16)))
			n := 16 * uint64(1+rng.IntN(int((d.size-sec)/16)))
			bad := k < 95
			verb := "good-range"
			if bad {
				verb = "error-range"
			}
			id := d.id
			return crashCmd{kind: verb, args: []string{verb, d.name, fmt.Sprint(sec), fmt.Sprint(n)}, apply: func(m *model) {
				d := m.devs[id]
				if d.pristine == nil {
					d.pristine = d.active
				}
				if d.errs == nil {
					d.errs = make([]bool, d.size)
				} else {
					d.errs = slices.Clone(d.errs)
				}
				for s := sec; s < sec+n; s++ {
					d.errs[s] = bad
				}
				if anyTrue(d.errs) {
					d.active = splice(d.pristine, d.errs)
				} else {
					d.active, d.pristine, d.errs = d.pristine, nil, nil
				}
				d.inactive, d.suspended = nil, false
			}}
		}
	}
}

// stripeShapes are (#stripes, chunk) pairs whose rows divide 16 sectors.
var stripeShapes = [][2]uint64{{2, 8}, {2, 4}, {4, 4}, {4, 2}, {2, 2}, {1, 16}}

// genTable returns a table of size sectors for device self (-1: a new
// device), in one to three segments at multiples of 16 sectors, over
// leaves and over mapped devices that cannot lead back to self.
func genTable(rng *rand.Rand, m *model, self int, size uint64) mtable {
	nseg := 1 + rng.IntN(3)
	for size < uint64(16*nseg) {
		nseg--
	}
	var cuts []uint64
	for range nseg - 1 {
		cuts = append(cuts, 16*uint64(1+rng.IntN(int(size/16)-1)))
	}
	cuts = append(cuts, 0, size)
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	// child returns a random child with at least n sectors and an offset
	// leaving n sectors.
	child := func(n uint64) mref {
		type cand struct {
			k    mref
			size uint64
		}
		var cs []cand
		for i := range m.leaves {
			cs = append(cs, cand{mref{leaf: i}, m.leafSize})
		}
		for _, d := range m.sorted() {
			if d.active != nil && d.size >= n && (self < 0 || !m.reaches(d.id, self)) {
				// Devices weigh more than leaves, so that stacks grow.
				cs = append(cs, cand{mref{leaf: -1, dev: d.id}, d.size}, cand{mref{leaf: -1, dev: d.id}, d.size})
			}
		}
		c := cs[rng.IntN(len(cs))]
		c.k.off = uint64(rng.IntN(int(c.size-n) + 1))
		return c.k
	}
	var t mtable
	for i := 0; i+1 < len(cuts); i++ {
		s := mseg{start: cuts[i], n: cuts[i+1] - cuts[i]}
		switch k := rng.IntN(10); {
		case k < 5:
			s.typ = "linear"
			s.kids = []mref{child(s.n)}
		case k < 9:
			sh := stripeShapes[rng.IntN(len(stripeShapes))]
			s.typ, s.chunk = "striped", sh[1]
			for range sh[0] {
				s.kids = append(s.kids, child(s.n/sh[0]))
			}
		default:
			s.typ = "error"
		}
		t = append(t, s)
	}
	return t
}
