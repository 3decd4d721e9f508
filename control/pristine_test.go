package control_test

import (
	"testing"

	"github.com/daxstack/daxstack/control"
)

// TestRenameChildKeepsErrorRangeRestore: error-range keeps the table
// before its first splice, to restore it when every range is good again.
// That table names its children, so renaming a child must rename it there
// too: good-range must then bring back a table over the renamed child, not
// one naming the old name (which another device may have taken since).
func TestRenameChildKeepsErrorRangeRestore(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "c", Table: strPtr("0 100 linear " + f.leaves[0] + " 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "p", Table: strPtr("0 100 linear c 0")})
	must[control.Empty](f, "error-range", control.RangeReq{Name: "p", Sector: 10, Count: 5})
	must[control.Empty](f, "rename", control.RenameReq{Name: "c", New: "c2"})
	// A new device takes the old name.
	must[control.Empty](f, "create", control.CreateReq{Name: "c", Table: strPtr("0 100 zero")})
	must[control.Empty](f, "good-range", control.RangeReq{Name: "p", Sector: 10, Count: 5})
	if got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "p"})); got != "0 100 linear c2 0" {
		t.Fatalf("p after good-range: %q, want its table over the renamed child", got)
	}
	// And the renamed device's own kept table follows its new name.
	must[control.Empty](f, "error-range", control.RangeReq{Name: "p", Sector: 0, Count: 1})
	must[control.Empty](f, "rename", control.RenameReq{Name: "p", New: "p2"})
	must[control.Empty](f, "good-range", control.RangeReq{Name: "p2", Sector: 0, Count: 1})
	if got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "p2"})); got != "0 100 linear c2 0" {
		t.Fatalf("p2 after good-range: %q", got)
	}
}
