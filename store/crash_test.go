package store_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/store"
)

// The crash workload: step i (from 1) is one Update that touches every
// bucket, deterministically in i, and records i under the meta key
// "step". A model replays the same steps on maps, so the state after any
// number of steps is known without reading the database.

func stepDevice(i uint64) store.DeviceRecord {
	name := fmt.Sprintf("dev%02d", i%37)
	return store.DeviceRecord{
		Name: name, UUID: "uuid-" + name, Minor: uint32(i % 37),
		Active: strp(fmt.Sprintf("0 %d zero", i)), EventNr: i,
		ErrorRanges: extent.Of(extent.Extent{Start: i, Len: 1 + i%4}),
		Created:     t0.Add(time.Duration(i) * time.Second),
	}
}

func stepVictim(i uint64) (string, bool) { return fmt.Sprintf("dev%02d", (i*7)%37), i%4 == 0 }

func stepLeaf(i uint64) store.LeafRecord {
	return store.LeafRecord{ID: fmt.Sprintf("leaf%d", i%5), Ref: "/dev/pmem" + strconv.FormatUint(i%5, 10), Size: i}
}

func stepPoison(i uint64) extent.Set {
	if i%3 == 0 {
		return extent.Set{}
	}
	return extent.Of(extent.Extent{Start: i * 8, Len: i % 3})
}

func stepHolder(i uint64) (store.HolderRecord, int) { // 1: put, -1: delete, 0: nothing
	h := store.HolderRecord{Device: stepDevice(i).Name, Holder: "h" + strconv.FormatUint(i, 10), PID: int(i), Since: t0}
	switch i % 6 {
	case 0:
		return h, 1
	case 3:
		return h, -1
	}
	return h, 0
}

func stepEvents(i uint64) []rmapchain.Event {
	var evs []rmapchain.Event
	for j := range i % 3 {
		evs = append(evs, rmapchain.Event{
			Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: rmapchain.MediaError, Device: stepDevice(i).Name,
			Ranges: extent.Of(extent.Extent{Start: i, Len: 1}),
			Cause:  rmapchain.Cause{Device: "step", Ranges: extent.Of(extent.Extent{Start: i*10 + j, Len: 1})},
		})
	}
	return evs
}

const stepTrimEvery, stepTrimKeep = 50, 20

func storedStep(tx *store.Tx) (uint64, error) {
	v, err := tx.Meta("step")
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("meta step is %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// applyStep is step i through the store's API.
func applyStep(tx *store.Tx, i uint64) error {
	if err := tx.PutDevice(stepDevice(i)); err != nil {
		return err
	}
	if v, ok := stepVictim(i); ok {
		if err := tx.DeleteDevice(v); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if err := tx.PutLeaf(stepLeaf(i)); err != nil {
		return err
	}
	if err := tx.SetPoison(stepLeaf(i).ID, stepPoison(i)); err != nil {
		return err
	}
	switch h, op := stepHolder(i); op {
	case 1:
		if err := tx.PutHolder(h); err != nil {
			return err
		}
	case -1:
		if err := tx.DeleteHolder(h.Device); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if _, err := tx.AppendEvents(stepEvents(i)); err != nil {
		return err
	}
	if i%stepTrimEvery == 0 {
		if err := tx.TrimEvents(stepTrimKeep); err != nil {
			return err
		}
	}
	return tx.SetMeta("step", be64(i))
}

// model is the state after step steps, kept in maps.
type model struct {
	step    uint64
	devices map[string]store.DeviceRecord
	leaves  map[string]store.LeafRecord
	poison  map[string]extent.Set
	holders map[string]store.HolderRecord
	events  []rmapchain.Event // with Seq
	lastSeq uint64
}

func newModel() *model {
	return &model{devices: map[string]store.DeviceRecord{}, leaves: map[string]store.LeafRecord{},
		poison: map[string]extent.Set{}, holders: map[string]store.HolderRecord{}}
}

func (m *model) advance(to uint64) {
	for m.step < to {
		m.step++
		i := m.step
		d := stepDevice(i)
		m.devices[d.Name] = d
		if v, ok := stepVictim(i); ok {
			delete(m.devices, v)
		}
		l := stepLeaf(i)
		m.leaves[l.ID] = l
		if p := stepPoison(i); p.Empty() {
			delete(m.poison, l.ID)
		} else {
			m.poison[l.ID] = p
		}
		switch h, op := stepHolder(i); op {
		case 1:
			m.holders[h.Device] = h
		case -1:
			delete(m.holders, h.Device)
		}
		for _, ev := range stepEvents(i) {
			m.lastSeq++
			ev.Seq = m.lastSeq
			m.events = append(m.events, ev)
		}
		if i%stepTrimEvery == 0 {
			m.events = slices.DeleteFunc(m.events, func(ev rmapchain.Event) bool { return ev.Seq+stepTrimKeep <= m.lastSeq })
		}
	}
}

// check compares the whole database with the model through the store's
// API; every record must decode.
func (m *model) check(t testing.TB, db *store.DB) {
	t.Helper()
	err := db.View(func(tx *store.Tx) error {
		devs, err := tx.Devices()
		if err != nil {
			return err
		}
		var got, want []string
		for _, r := range devs {
			got = append(got, showDevice(t, r))
		}
		for _, k := range slices.Sorted(maps.Keys(m.devices)) {
			want = append(want, showDevice(t, m.devices[k]))
		}
		compareLists(t, "devices", got, want)

		ls, err := tx.Leaves()
		if err != nil {
			return err
		}
		got, want = nil, nil
		for _, r := range ls {
			got = append(got, showLeaf(t, r))
			p, err := tx.Poison(r.ID)
			if err != nil {
				return err
			}
			if !p.Equal(m.poison[r.ID]) {
				t.Errorf("step %d: poison of %s is %v, want %v", m.step, r.ID, p, m.poison[r.ID])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(m.leaves)) {
			want = append(want, showLeaf(t, m.leaves[k]))
		}
		compareLists(t, "leaves", got, want)

		hs, err := tx.Holders()
		if err != nil {
			return err
		}
		got, want = nil, nil
		for _, r := range hs {
			got = append(got, showHolder(t, r))
		}
		for _, k := range slices.Sorted(maps.Keys(m.holders)) {
			want = append(want, showHolder(t, m.holders[k]))
		}
		compareLists(t, "holders", got, want)

		got, want = nil, nil
		if err := tx.Events(0, func(ev rmapchain.Event) error {
			got = append(got, showEvent(t, ev))
			return nil
		}); err != nil {
			return err
		}
		for _, ev := range m.events {
			want = append(want, showEvent(t, ev))
		}
		compareLists(t, "events", got, want)
		last, err := tx.LastSeq()
		if err != nil {
			return err
		}
		if last != m.lastSeq {
			t.Errorf("step %d: LastSeq %d, want %d", m.step, last, m.lastSeq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("step %d: %v", m.step, err)
	}
}

func compareLists(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s differ:\n got %d: %q\nwant %d: %q", what, len(got), got, len(want), want)
	}
}

// rawCheck runs bbolt's own consistency check on a closed database and
// checks the poison bucket holds only leaves the model has poison for.
func rawCheck(t testing.TB, path string, m *model) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		var keys []string
		tx.Bucket([]byte("poison")).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
		compareLists(t, "poison keys", keys, slices.Sorted(maps.Keys(m.poison)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashSafety kills a child process with SIGKILL at random moments
// while it runs Updates in a loop, hundreds of times, and after each kill
// reopens the database and checks that it opens, that every record
// decodes, and that it holds exactly the state after the last step the
// child reported committed, or after one more (committed, killed before
// it could say so).
func TestCrashSafety(t *testing.T) {
	// The budget bounds the run; on a loaded machine the run goes on
	// (up to eight budgets) until the workload has made minSteps steps,
	// so that what is checked does not depend on the machine's speed.
	kills, budget, minSteps := 300, 15*time.Second, uint64(100)
	if testing.Short() {
		kills, budget, minSteps = 25, 3*time.Second, 0
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	path := t.TempDir() + "/crash.db"
	m := newModel()
	var reported uint64
	start := time.Now()
	n := 0
	early := 0
	for ; (n < kills && time.Since(start) < budget) || (m.step < minSteps && time.Since(start) < 8*budget); n++ {
		c := startChild(t, "crash", path)
		// One kill in five at a random moment from the start, which may
		// land before or during Open (and, the first time, during the
		// file's initialisation); the rest a random moment after the
		// child's first committed step.
		if rng.IntN(5) == 0 {
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
			early++
		} else {
			select {
			case l, ok := <-c.lines:
				if ok {
					reported = parseStep(t, l, reported)
				}
			case <-time.After(time.Minute):
				t.Fatal("child committed nothing for a minute")
			}
			time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
		}
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		rest, err := c.rest()
		for _, l := range rest {
			reported = parseStep(t, l, reported)
		}
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v, not by SIGKILL", err)
		}

		db, err := store.Open(path, store.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("kill %d (after step %d reported): reopen: %v", n, reported, err)
		}
		var step uint64
		if err := db.View(func(tx *store.Tx) error { step, err = storedStep(tx); return err }); err != nil {
			t.Fatalf("kill %d: %v", n, err)
		}
		if step != reported && step != reported+1 {
			t.Fatalf("kill %d: the database is at step %d, the child reported step %d committed", n, step, reported)
		}
		if step < m.step {
			t.Fatalf("kill %d: the database went back from step %d to %d", n, m.step, step)
		}
		m.advance(step)
		m.check(t, db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		rawCheck(t, path, m)
		reported = step // a step committed but unreported is committed all the same
	}
	t.Logf("%d kills (%d early) in %v; %d steps, %d events, last seq %d", n, early, time.Since(start).Round(time.Millisecond), m.step, len(m.events), m.lastSeq)
	if m.step < minSteps {
		t.Errorf("only %d steps in all: the workload hardly ran", m.step)
	}
}

// parseStep reads a reported step, which must follow the last.
func parseStep(t testing.TB, line string, last uint64) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		t.Fatalf("child said %q", line)
	}
	if n != last+1 {
		t.Fatalf("child reported step %d after %d", n, last)
	}
	return n
}
