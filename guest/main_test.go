//go:build guest

package guest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is the daxstack binary the tests drive, oraclePath the kernel
// oracle's dm-stack.out: scripts/vm-test.sh puts both in the initramfs and
// names them in DAXSTACK_BIN and DAXSTACK_ORACLE.
var bin, oraclePath string

// TestMain checks that this is the guest vm-test.sh boots (NVDIMM regions
// and ndctl present) and gives the NVDIMMs label space, so that ndctl can
// create and destroy namespaces of any size in every region. Anywhere else
// the tests cannot mean anything, so the binary fails at once.
func TestMain(m *testing.M) {
	bin = os.Getenv("DAXSTACK_BIN")
	oraclePath = os.Getenv("DAXSTACK_ORACLE")
	if err := setUp(); err != nil {
		fmt.Fprintf(os.Stderr, "guest tests: %v\n(these tests run only inside the guest that scripts/vm-test.sh boots)\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setUp() error {
	if bin == "" || oraclePath == "" {
		return fmt.Errorf("DAXSTACK_BIN and DAXSTACK_ORACLE are not set")
	}
	for _, p := range []string{bin, oraclePath} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("ndctl"); err != nil {
		return err
	}
	regions, _ := filepath.Glob("/sys/bus/nd/devices/region*")
	if len(regions) < 3 {
		return fmt.Errorf("want 3 NVDIMM regions, found %d", len(regions))
	}
	// Blank label areas make the kernel show one label-less namespace per
	// region that cannot be divided; initialised labels make each region
	// an empty pool for create-namespace.
	for _, args := range [][]string{{"disable-region", "all"}, {"init-labels", "all"}, {"enable-region", "all"}} {
		if out, err := exec.Command("ndctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ndctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
