package stack

import "strings"

// Dev is a node of the device graph: a leaf or a mapped device. Targets
// hold *Dev values for their children; two references to the same device
// give the same *Dev.
type Dev struct {
	leaf Leaf    // set for leaves
	md   *Device // set for mapped devices
}

// IsLeaf reports whether d is a leaf.
func (d *Dev) IsLeaf() bool { return d.leaf != nil }

// Leaf returns the leaf behind d, or nil for a mapped device.
func (d *Dev) Leaf() Leaf { return d.leaf }

// Mapped returns the mapped device behind d, or nil for a leaf.
func (d *Dev) Mapped() *Device { return d.md }

// Name returns the name used in messages: the mapped device's name, or the
// leaf's short name.
func (d *Dev) Name() string {
	if d.md != nil {
		return d.md.Name()
	}
	return d.leaf.Name()
}

// Ref returns how a table names d when printed. Mapped devices print by
// name; a name that would read back as something else (major:minor) prints
// as /dev/mapper/NAME. Whitespace and backslashes are escaped so that the
// printed table splits back into the same arguments.
func (d *Dev) Ref() string {
	if d.md != nil {
		n := d.md.Name()
		if _, _, ok := parseDevno(n); ok {
			n = MapperDir + n
		}
		return EscapeArg(n)
	}
	return EscapeArg(d.leaf.Ref())
}

// Size returns d's current size in sectors: a leaf's size, or the size of a
// mapped device's active table (0 with no table).
func (d *Dev) Size() uint64 {
	if d.md != nil {
		return d.md.Size()
	}
	return d.leaf.Size()
}

// MapperDir is the directory prefix under which mapped devices can be named
// in tables, as with device-mapper's /dev/mapper.
const MapperDir = "/dev/mapper/"

// MappedMajor is the major number daxstack reports for its mapped devices.
// They exist only in user space, so they get major 0, which the kernel never
// gives a block device; "0:N" in a table therefore always means mapped
// device N and never collides with a real device.
const MappedMajor = 0

// parseDevno parses "major:minor" (decimal, no sign, no spaces).
func parseDevno(s string) (major, minor uint32, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	ma, ok1 := parseUint32(a)
	mi, ok2 := parseUint32(b)
	return ma, mi, ok1 && ok2
}

func parseUint32(s string) (uint32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}
