package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkCLICreateRemove runs `daxstack create` and `daxstack remove`
// through the built binary in embedded mode, on a database that already
// holds 100 devices over a file leaf, and reports the median and 90th
// percentile of the pair and of each command (goal: a pair within 15 ms at
// the median). Baselines, measured right after in the same run, the same
// number of times: two runs of /bin/true (the cost of starting any
// process) and two of `daxstack version` (starting daxstack and opening
// the database read-only).
func BenchmarkCLICreateRemove(b *testing.B) {
	dir := b.TempDir()
	env := append(os.Environ(),
		"DAXSTACK_DB="+filepath.Join(dir, "daxstack.db"),
		"DAXSTACK_SOCKET="+filepath.Join(dir, "daxstack.sock"))
	leaf := filepath.Join(dir, "leaf.img")
	if err := os.WriteFile(leaf, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(leaf, 64<<20); err != nil {
		b.Fatal(err)
	}
	run := func(name string, args ...string) time.Duration {
		c := exec.Command(name, args...)
		c.Env, c.Dir = env, dir
		start := time.Now()
		if out, err := c.CombinedOutput(); err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return time.Since(start)
	}
	var specs []string
	for i := range 100 {
		specs = append(specs, fmt.Sprintf("bg%03d,,,,0 64 linear %s %d", i, leaf, 64*i))
	}
	run(bin, "create", "--concise", strings.Join(specs, ";"))
	table := fmt.Sprintf("0 8 linear %s %d", leaf, 64*100)

	var creates, removes, pairs []time.Duration
	for b.Loop() {
		c := run(bin, "create", "bench", "--table", table)
		r := run(bin, "remove", "bench")
		creates, removes, pairs = append(creates, c), append(removes, r), append(pairs, c+r)
	}
	var trues, versions []time.Duration
	for range pairs {
		trues = append(trues, run("/bin/true")+run("/bin/true"))
		versions = append(versions, run(bin, "version")+run(bin, "version"))
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(quantile(pairs, 0.5)), "ms/pair-p50")
	b.ReportMetric(ms(quantile(pairs, 0.9)), "ms/pair-p90")
	b.ReportMetric(ms(quantile(creates, 0.5)), "ms/create-p50")
	b.ReportMetric(ms(quantile(removes, 0.5)), "ms/remove-p50")
	b.ReportMetric(ms(quantile(trues, 0.5)), "ms/2true-p50")
	b.ReportMetric(ms(quantile(versions, 0.5)), "ms/2version-p50")
	b.ReportMetric(float64(quantile(pairs, 0.5))/float64(quantile(versions, 0.5)), "x-version")
	b.ReportMetric(float64(quantile(pairs, 0.5))/float64(quantile(trues, 0.5)), "x-true")
}

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
