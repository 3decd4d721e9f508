package control_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
)

// levelTables returns the tables of the stack of stack's BenchmarkMap3Levels
// over file leaves: bottom, mid and top, each n linear segments of 32 to 96
// sectors over the level below (bottom over the four leaves), every level
// a random partition of the one below laid out in random order.
func levelTables(leaves []string, n int, leafSectors uint64) [3]string {
	rng := rand.New(rand.NewPCG(1, 77))
	const avg = 64
	size := uint64(n) * avg
	pieces := func(fixed []uint64) [][2]uint64 {
		pts := slices.Clone(fixed)
		for i := 1; i < n; i++ {
			pts = append(pts, uint64(i)*avg-32+rng.Uint64N(33))
		}
		slices.Sort(pts)
		var out [][2]uint64
		at := uint64(0)
		for _, c := range append(pts, size) {
			if c > at {
				out = append(out, [2]uint64{at, c - at})
				at = c
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	var out [3]string
	var b strings.Builder
	at := uint64(0)
	for _, pc := range pieces([]uint64{leafSectors, 2 * leafSectors, 3 * leafSectors}) {
		l := pc[0] / leafSectors
		fmt.Fprintf(&b, "%d %d linear %s %d\n", at, pc[1], leaves[l], pc[0]-l*leafSectors)
		at += pc[1]
	}
	out[0] = b.String()
	for i, below := range []string{"bottom", "mid"} {
		b.Reset()
		at = 0
		for _, pc := range pieces(nil) {
			fmt.Fprintf(&b, "%d %d linear %s %d\n", at, pc[1], below, pc[0])
			at += pc[1]
		}
		out[i+1] = b.String()
	}
	return out
}

// BenchmarkResume3x100k is what `daxstack resume top` costs in embedded
// mode, without the process start, on a database holding bottom, mid and
// top of 100k linear segments each (3 x 100k, over four sparse file
// leaves), with a table loaded into top's inactive slot: open (every table
// re-parsed and built, every device resumed, which builds its compiled
// map), the resume (top's table swapped in, its map rebuilt), close. The
// baseline, in turns with it in the same run, is the same with compiled
// maps off (DAXSTACK_COMPILED_MAPS=off: the resume as it was before
// them). Goal: x-of-nomaps <= 2. Each turn loads the inactive table first,
// untimed.
func BenchmarkResume3x100k(b *testing.B) {
	dir := b.TempDir()
	const n = 100_000
	leafSectors := uint64(n) * 64 / 4
	var leaves []string
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("leaf%d.img", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(p, int64(leafSectors)*512); err != nil {
			b.Fatal(err)
		}
		leaves = append(leaves, p)
	}
	tables := levelTables(leaves, n, leafSectors)
	cfg := control.Config{DB: filepath.Join(dir, "daxstack.db"), SysfsRoot: filepath.Join(dir, "nosys")}
	ctx := context.Background()
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
	for i, name := range []string{"bottom", "mid", "top"} {
		cmd(func(e *control.Engine) error { return e.Create(ctx, control.CreateReq{Name: name, Table: &tables[i]}) })
	}
	load := func() {
		cmd(func(e *control.Engine) error { return e.Load(ctx, control.LoadReq{Name: "top", Table: tables[2]}) })
	}
	resume := func() {
		cmd(func(e *control.Engine) error { return e.Resume(ctx, control.SuspendReq{Name: "top"}) })
	}
	var t [2]time.Duration
	rounds := 0
	b.ResetTimer()
	for b.Loop() {
		for k, env := range []string{"", "off"} {
			b.StopTimer()
			os.Setenv("DAXSTACK_COMPILED_MAPS", env)
			load()
			b.StartTimer()
			t0 := time.Now()
			resume()
			t[k] += time.Since(t0)
		}
		rounds++
	}
	b.StopTimer()
	os.Unsetenv("DAXSTACK_COMPILED_MAPS")
	maps := float64(t[0].Nanoseconds()) / float64(rounds) / 1e6
	none := float64(t[1].Nanoseconds()) / float64(rounds) / 1e6
	b.ReportMetric(maps, "ms/resume")
	b.ReportMetric(none, "ms/resume-nomaps")
	b.ReportMetric(maps/none, "x-of-nomaps")
}
