package oracle

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	out := strings.Join([]string{
		"leaves: nv0=/dev/pmem1",
		"s0: 0 2048 striped 2 8 259:1 64 259:0 128",
		"top: 0 1000 linear 254:0 24",
		"top: 1000 16 error ",
		"top size: 1248 sectors",
		"write top 0+1000: ok",
		"write top 1000+1: FAIL rc=1 (dd: error writing '/dev/mapper/top': Input/output error)",
		"read top 999+1: ok S0000999",
		"read top 1216+1: ok ",
		"map nv0 leaf 80..87 <- top 8..15",
		"map nv1 leaf 136..143 <- top 0..7",
		"badblocks pmem0: 300 4",
		"device-mapper: reload ioctl on bad1 (254:2) failed: Invalid argument",
		"[    3.422849] device-mapper: table: 254:2: striped: Target length not divisible by number of stripes (-EINVAL)",
		"[    3.485959] device-mapper: table: 254:2: striped: Target length not divisible by chunk size (-EINVAL)",
		"[    3.551347] device-mapper: table: 254:2: pmem1 too small for target: start=0, len=100000000, dev_size=262144",
	}, "\n")
	got, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{
		Tables: map[string][]string{
			"s0":  {"0 2048 striped 2 8 259:1 64 259:0 128"},
			"top": {"0 1000 linear 254:0 24", "1000 16 error "},
		},
		IO: map[string]string{
			"write top 0+1000": "ok",
			"write top 1000+1": "FAIL",
			"read top 999+1":   "ok S0000999",
			"read top 1216+1":  "ok",
		},
		Maps: []string{"map nv0 leaf 80..87 <- top 8..15", "map nv1 leaf 136..143 <- top 0..7"},
		Refused: []string{
			"striped: Target length not divisible by number of stripes (-EINVAL)",
			"striped: Target length not divisible by chunk size (-EINVAL)",
			"pmem1 too small for target: start=0, len=100000000, dev_size=262144",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseIncomplete(t *testing.T) {
	tests := []struct {
		name, out string
	}{
		{"empty", ""},
		{"no refusals", "s0: 0 8 zero\ntop: 0 8 zero\nmap nv0 leaf 0..7 <- top 0..7"},
		{"no maps", "s0: 0 8 zero\ntop: 0 8 zero\n" + strings.Repeat("device-mapper: table: 254:2: no\n", 3)},
		{"one table", "s0: 0 8 zero\nmap nv0 leaf 0..7 <- top 0..7\n" + strings.Repeat("device-mapper: table: 254:2: no\n", 3)},
	}
	for _, tc := range tests {
		if rec, err := Parse(strings.NewReader(tc.out)); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", tc.name, rec)
		}
	}
}

// TestReadTheOracle reads the repository's dm-stack.out, from this
// package's directory two levels below the module root.
func TestReadTheOracle(t *testing.T) {
	rec, err := Read(filepath.Join("..", Dir, "dm-stack.out"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Tables["s0"]) != 1 || len(rec.Tables["top"]) != 4 {
		t.Errorf("tables %q", rec.Tables)
	}
	if rec.IO["read top 323+1"] != "FAIL" || rec.IO["read top 328+1"] != "ok S0000328" {
		t.Errorf("io %q", rec.IO)
	}
	if rec.Maps[0] != "map nv0 leaf 80..87 <- top 8..15" || !strings.HasPrefix(rec.Maps[len(rec.Maps)-1], "map ram1 ") {
		t.Errorf("maps run from %q to %q", rec.Maps[0], rec.Maps[len(rec.Maps)-1])
	}
}

func TestPatternLeafMap(t *testing.T) {
	p := Pattern(998, 2)
	if len(p) != 2*512 || string(p[:16]) != "S0000998S0000998" || string(p[1016:]) != "S0000999" {
		t.Fatalf("Pattern(998, 2) = %q...%q", p[:16], p[1016:])
	}
	// A leaf of 12 sectors: top 8..10 at 0..2, a zero sector, top 20..21
	// at 4..5, top 30 at 6 with a torn tail, top 40 at 7 and top 42 at 8
	// (not consecutive), top 43 at 9, then zeros.
	leaf := make([]byte, 12*512)
	put := func(at int, b []byte) { copy(leaf[at*512:], b) }
	put(0, Pattern(8, 3))
	put(4, Pattern(20, 2))
	put(6, Pattern(30, 1))
	copy(leaf[6*512+504:], "S0000031")
	put(7, Pattern(40, 1))
	put(8, Pattern(42, 2))
	got := LeafMap("nv0", leaf, 12)
	want := []string{
		"map nv0 leaf 0..2 <- top 8..10",
		"map nv0 leaf 4..5 <- top 20..21",
		"map nv0 leaf 7..7 <- top 40..40",
		"map nv0 leaf 8..9 <- top 42..43",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LeafMap:\n got %q\nwant %q", got, want)
	}
	if got := LeafMap("nv0", leaf, 2); !reflect.DeepEqual(got, []string{"map nv0 leaf 0..1 <- top 8..9"}) {
		t.Errorf("LeafMap of 2 sectors: %q", got)
	}
}
