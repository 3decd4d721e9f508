package control_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
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

// TestRemoveChildOfKeptTable: when error-range covers all of a parent's
// segment over a child, the live table no longer names the child, but the
// table good-range restores does. Removing the child must be refused as
// busy, or good-range would fail, or splice back whatever device takes the
// name next.
func TestRemoveChildOfKeptTable(t *testing.T) {
	f := newFixture(t, 1, 4096)
	must[control.Empty](f, "create", control.CreateReq{Name: "c", Table: strPtr("0 100 linear " + f.leaves[0] + " 0")})
	must[control.Empty](f, "create", control.CreateReq{Name: "p", Table: strPtr("0 50 linear c 0\n50 50 linear " + f.leaves[0] + " 500")})
	must[control.Empty](f, "error-range", control.RangeReq{Name: "p", Sector: 0, Count: 50})
	sum := f.sum()
	_, err := call[control.Empty](f, "remove", control.RemoveReq{Name: "c"})
	if !errors.Is(err, stack.ErrBusy) || !strings.Contains(err.Error(), "c is used by p") {
		t.Fatalf("remove c: %v, want busy: used by p", err)
	}
	if f.sum() != sum {
		t.Fatalf("the refused remove changed the database")
	}
	must[control.Empty](f, "good-range", control.RangeReq{Name: "p", Sector: 0, Count: 50})
	if got := tableLines(must[control.TableResp](f, "table", control.TableReq{Name: "p"})); got != "0 50 linear c 0\n50 50 linear "+f.leaves[0]+" 500" {
		t.Fatalf("p after good-range: %q", got)
	}
	// Once nothing keeps it, c goes (after p, which uses it live again).
	must[control.Empty](f, "remove", control.RemoveReq{Name: "p"})
	must[control.Empty](f, "remove", control.RemoveReq{Name: "c"})
}
