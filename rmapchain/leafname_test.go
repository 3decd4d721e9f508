package rmapchain

import "testing"

type namedLeaf struct{ ref, name string }

func (l namedLeaf) Ref() string  { return l.ref }
func (l namedLeaf) Name() string { return l.name }

// TestLeafName: block devices by their node after the kernel's name,
// everything else by its reference.
func TestLeafName(t *testing.T) {
	for _, tc := range []struct {
		ref, name, want string
	}{
		{"259:0", "pmem0", "/dev/pmem0"},
		{"7:3", "loop3", "/dev/loop3"},
		{"259:0", "", "259:0"},      // no kernel name known
		{"259:0", "259:0", "259:0"}, // named by its number
		{"/leaves/a.img", "/leaves/a.img", "/leaves/a.img"},
		{"/dev/dax0.0", "dax0.0", "/dev/dax0.0"},
		{"/dev/mapper/0:7", "x", "/dev/mapper/0:7"},
	} {
		if got := LeafName(namedLeaf{tc.ref, tc.name}); got != tc.want {
			t.Errorf("LeafName(%q, %q) = %q, want %q", tc.ref, tc.name, got, tc.want)
		}
	}
}
