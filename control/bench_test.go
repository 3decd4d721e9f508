package control_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/store"
)

// Sizes of the 10k-device database: bigLinear linear devices over
// bigLeaves file leaves, bigMid linear devices over the first of them,
// and bigStriped striped devices over pairs of those.
const (
	bigLeaves  = 4
	bigLinear  = 8000
	bigMid     = 1500
	bigStriped = 500
	bigDevices = bigLinear + bigMid + bigStriped
)

// bigDB builds a database of 10k stacked devices in dir and returns its
// path. Creating them one by one through the engine takes minutes (each
// table swap rebuilds the whole device graph, see the report), so the
// engine creates the first devices of each kind, which records the leaves
// too, and the rest are written with the store in the format of the
// engine's own records (checked against them). Every table is re-parsed and
// checked by each Open.
func bigDB(tb testing.TB, dir string) string {
	tb.Helper()
	var leaves []string
	for i := range bigLeaves {
		p := filepath.Join(dir, fmt.Sprintf("leaf%d.img", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Truncate(p, 1<<30); err != nil {
			tb.Fatal(err)
		}
		leaves = append(leaves, p)
	}
	type spec struct{ name, table string }
	var specs []spec
	for i := range bigLinear {
		specs = append(specs, spec{fmt.Sprintf("lin%05d", i), fmt.Sprintf("0 64 linear %s %d", leaves[i%bigLeaves], (i/bigLeaves)*64)})
	}
	for i := range bigMid {
		specs = append(specs, spec{fmt.Sprintf("mid%05d", i), fmt.Sprintf("0 64 linear lin%05d 0", i)})
	}
	for i := range bigStriped {
		specs = append(specs, spec{fmt.Sprintf("str%05d", i), fmt.Sprintf("0 64 striped 2 8 mid%05d 0 mid%05d 32", 2*i, 2*i+1)})
	}
	// Through the engine: a linear device on every leaf, two over those,
	// one striped over the two.
	seed := []spec{specs[0], specs[1], specs[2], specs[3], specs[bigLinear], specs[bigLinear+1], specs[bigLinear+bigMid]}
	var concise []string
	for _, s := range seed {
		concise = append(concise, s.name+",,,,"+s.table)
	}
	db := filepath.Join(dir, "daxstack.db")
	e, err := control.Open(control.Config{DB: db, SysfsRoot: filepath.Join(dir, "nosys")})
	if err != nil {
		tb.Fatal(err)
	}
	err = e.CreateConcise(context.Background(), control.ConciseReq{Spec: strings.Join(concise, ";")})
	e.Close()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := store.Open(db, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *store.Tx) error {
		seeded := map[string]bool{}
		var tmpl store.DeviceRecord
		for _, sp := range seed {
			r, err := tx.Device(sp.name)
			if err != nil {
				return err
			}
			if r.Active == nil || *r.Active != sp.table {
				return fmt.Errorf("the engine stored %s's table as %v, not %q", sp.name, r.Active, sp.table)
			}
			seeded[sp.name], tmpl = true, r
		}
		minor := uint32(len(seed))
		for _, sp := range specs {
			if seeded[sp.name] {
				continue
			}
			r := tmpl
			table := sp.table
			r.Name, r.Minor, r.Active = sp.name, minor, &table
			minor++
			if err := tx.PutDevice(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// BenchmarkOpen10k measures control.Open on a database of 10k devices
// (8000 linear over 4 file leaves, 1500 linear over those, 500 striped
// over pairs of the latter): reading every record, re-parsing every
// table, opening the leaves and rebuilding the graph, as every embedded
// command does. The baseline, measured right after (testenv.Paired), is store.Open and
// reading the device and leaf records alone. Goal: at most 1 s per open.
func BenchmarkOpen10k(b *testing.B) {
	dir := b.TempDir()
	start := time.Now()
	db := bigDB(b, dir)
	b.Logf("built %d devices in %v", bigDevices, time.Since(start))
	for _, ro := range []bool{true, false} {
		name := "readwrite"
		if ro {
			name = "readonly"
		}
		b.Run(name, func(b *testing.B) {
			cfg := control.Config{DB: db, ReadOnly: ro, SysfsRoot: filepath.Join(dir, "nosys")}
			n := 0
			for b.Loop() {
				e, err := control.Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				n++
				e.Close()
			}
			engine := b.Elapsed() / time.Duration(n)
			// Check once that it is the whole state.
			e, err := control.Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			list, err := e.List(context.Background())
			e.Close()
			if err != nil || len(list) != bigDevices {
				b.Fatalf("list: %d devices, %v", len(list), err)
			}
			for _, d := range list {
				if d.Broken != "" || d.Size != 64 || len(d.Deps) == 0 {
					b.Fatalf("%s did not load: %+v", d.Name, d)
				}
			}
			base := testenv.Paired(b, func(int) {
				s, err := store.Open(db, store.Options{ReadOnly: ro})
				if err != nil {
					b.Fatal(err)
				}
				err = s.View(func(tx *store.Tx) error {
					devs, err := tx.Devices()
					if err == nil && len(devs) != bigDevices {
						err = fmt.Errorf("%d devices", len(devs))
					}
					if err == nil {
						_, err = tx.Leaves()
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			})
			b.ReportMetric(float64(engine)/1e6, "ms/open")
			b.ReportMetric(base/1e6, "ms/store-open")
			b.ReportMetric(float64(engine)/base, "x-store")
		})
	}
}

// BenchmarkCreateRemove10k is what one `daxstack create` and one
// `daxstack remove` cost in embedded mode on the 10k-device database,
// without the process start: open, command, close, twice. The baseline,
// right after (testenv.Paired), is the two opens and closes alone.
func BenchmarkCreateRemove10k(b *testing.B) {
	dir := b.TempDir()
	db := bigDB(b, dir)
	cfg := control.Config{DB: db, SysfsRoot: filepath.Join(dir, "nosys")}
	table := fmt.Sprintf("0 8 linear %s 0", filepath.Join(dir, "leaf0.img"))
	cmd := func(fn func(*control.Engine) error) {
		e, err := control.Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		if err := fn(e); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	n := 0
	for b.Loop() {
		cmd(func(e *control.Engine) error { return e.Create(ctx, control.CreateReq{Name: "bench", Table: &table}) })
		cmd(func(e *control.Engine) error { return e.Remove(ctx, control.RemoveReq{Name: "bench"}) })
		n++
	}
	pair := b.Elapsed() / time.Duration(n)
	base := testenv.Paired(b, func(int) {
		for range 2 {
			e, err := control.Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			e.Close()
		}
	})
	b.ReportMetric(float64(pair)/1e6, "ms/create+remove")
	b.ReportMetric(base/1e6, "ms/2-opens")
	b.ReportMetric(float64(pair)/base, "x-opens")
}

// BenchmarkHandleWrite4KiB and BenchmarkHandleWrite1MiB write through an
// engine's handle (top linear over mid striped 2 x 64 KiB over two file
// leaves), sequentially through 64 MiB, and report the ratio to the same
// writes straight to the leaves' own mappings (dax.Leaf.WriteAt, chunk by
// chunk, as the stack places them), measured right after
// (testenv.Paired), and the commits each write made (the goal is 0: a
// write that clears no poison commits nothing).
func BenchmarkHandleWrite4KiB(b *testing.B) { benchHandleWrite(b, 4<<10) }

func BenchmarkHandleWrite1MiB(b *testing.B) { benchHandleWrite(b, 1<<20) }

func benchHandleWrite(b *testing.B, size int) {
	dir := b.TempDir()
	const leafSectors = 64 << 11 // 64 MiB
	var leaves []string
	for i := range 2 {
		p := filepath.Join(dir, fmt.Sprintf("leaf%d.img", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(p, leafSectors*512); err != nil {
			b.Fatal(err)
		}
		leaves = append(leaves, p)
	}
	e, err := control.Open(control.Config{DB: filepath.Join(dir, "daxstack.db"), SysfsRoot: filepath.Join(dir, "nosys"), Daemon: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	const devSectors = 2 * leafSectors
	mid := fmt.Sprintf("0 %d striped 2 128 %s 0 %s 0", devSectors, leaves[0], leaves[1])
	top := fmt.Sprintf("0 %d linear mid 0", devSectors)
	for _, c := range []control.CreateReq{{Name: "mid", Table: &mid}, {Name: "top", Table: &top}} {
		if err := e.Create(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	h, err := e.Open(ctx, control.OpenReq{Name: "top", Write: true})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	// The baseline's leaves: the same files, mapped on their own.
	var direct []*dax.Leaf
	for _, p := range leaves {
		l, err := (&dax.Opener{}).Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		direct = append(direct, l)
	}
	buf := bytes.Repeat([]byte{0x5a}, size)
	span := int64(devSectors * 512)
	// Fault every page in first (through both mappings), so that neither
	// side pays for a first touch.
	fault := make([]byte, 1<<20)
	for off := int64(0); off < span; off += 1 << 20 {
		if _, err := h.WriteAt(fault, off); err != nil {
			b.Fatal(err)
		}
	}
	const chunk = 128 * 512
	leafWrite := func(off int64) {
		for done := 0; done < size; {
			pos := off + int64(done)
			c := pos / chunk
			n := min(size-done, int(chunk-pos%chunk))
			at := c/2*chunk + pos%chunk
			if _, err := direct[c%2].WriteAt(buf[done:done+n], at); err != nil {
				b.Fatal(err)
			}
			done += n
		}
	}
	for _, l := range direct {
		for off := int64(0); off < leafSectors*512; off += 1 << 20 {
			if _, err := l.WriteAt(fault, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	commits := e.Stats().Commits
	b.SetBytes(int64(size))
	b.ResetTimer()
	var off int64
	n := 0
	for b.Loop() {
		if _, err := h.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if off += int64(size); off+int64(size) > span {
			off = 0
		}
		n++
	}
	stack := float64(b.Elapsed().Nanoseconds()) / float64(n)
	made := e.Stats().Commits - commits
	off = 0
	base := testenv.Paired(b, func(int) {
		leafWrite(off)
		if off += int64(size); off+int64(size) > span {
			off = 0
		}
	})
	b.ReportMetric(base, "leaf-ns/op")
	b.ReportMetric(base/stack, "x-of-leaf")
	b.ReportMetric(float64(made)/float64(n), "commits/write")
}
