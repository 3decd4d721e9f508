package flakey

import (
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/targets/internal/kscan"
)

// maxFeatureArgs is the largest feature argument count mainline takes
// (6.1 took 6).
const maxFeatureArgs = 11

// readArg is the kernel's dm_read_arg: a "%u%c" number within [lo, hi].
func readArg(s string, lo, hi uint32) (uint32, bool) {
	v, ok := kscan.Uint32(s)
	return v, ok && v >= lo && v <= hi
}

// parseFeatures is mainline's parse_features: the feature argument count
// (at most 11, and no more than the arguments left; anything after the
// counted arguments is ignored, as the kernel ignores it), then each
// feature, its duplicates, its conflicts and its parameters in the
// kernel's order and words, then the incompatibilities of the whole set.
// With no feature, the down interval fails reads and writes.
func (c *config) parseFeatures(args []string) error {
	var n uint32
	if len(args) > 0 {
		var ok bool
		n, ok = readArg(args[0], 0, maxFeatureArgs)
		if !ok || uint64(n) > uint64(len(args)-1) {
			return stack.Errorf("Invalid number of feature args", nil)
		}
		args = args[1:]
	}
	if n == 0 {
		c.errorReads, c.errorWrites = true, true
		return nil
	}
	shift := func() string { a := args[0]; args = args[1:]; n--; return a }
	for n > 0 {
		name := shift()
		switch {
		case kscan.EqualFold(name, "error_reads"):
			if c.errorReads {
				return stack.Errorf("Feature error_reads duplicated", nil)
			}
			c.errorReads = true
		case kscan.EqualFold(name, "drop_writes"):
			if c.dropWrites {
				return stack.Errorf("Feature drop_writes duplicated", nil)
			}
			c.dropWrites = true
			if c.errorWrites {
				return stack.Errorf("Feature drop_writes conflicts with feature error_writes", nil)
			}
		case kscan.EqualFold(name, "error_writes"):
			if c.errorWrites {
				return stack.Errorf("Feature error_writes duplicated", nil)
			}
			c.errorWrites = true
			if c.dropWrites {
				return stack.Errorf("Feature error_writes conflicts with feature drop_writes", nil)
			}
		case kscan.EqualFold(name, "corrupt_bio_byte"):
			if err := c.parseCorrupt(n, shift); err != nil {
				return err
			}
		case kscan.EqualFold(name, "random_read_corrupt"):
			if err := parseRandom(&c.randomRead, "random_read_corrupt", n, shift); err != nil {
				return err
			}
		case kscan.EqualFold(name, "random_write_corrupt"):
			if err := parseRandom(&c.randomWrite, "random_write_corrupt", n, shift); err != nil {
				return err
			}
		default:
			return stack.Errorf("Unrecognised flakey feature requested", nil)
		}
	}
	corruptsWrites := (c.corruptByte > 0 && c.corruptWrite) || c.randomWrite > 0
	corruptsReads := (c.corruptByte > 0 && !c.corruptWrite) || c.randomRead > 0
	switch {
	case c.dropWrites && corruptsWrites:
		return stack.Errorf("drop_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set", nil)
	case c.errorWrites && corruptsWrites:
		return stack.Errorf("error_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set", nil)
	case c.errorReads && corruptsReads:
		return stack.Errorf("error_reads is incompatible with random_read_corrupt or corrupt_bio_byte with the READ flag set", nil)
	}
	if c.corruptByte == 0 && !c.errorReads && !c.dropWrites && !c.errorWrites && c.randomRead == 0 && c.randomWrite == 0 {
		c.errorReads, c.errorWrites = true, true // "random_read_corrupt 0" alone is no feature
	}
	return nil
}

// parseCorrupt reads corrupt_bio_byte's four parameters; n is the count
// of feature arguments left.
func (c *config) parseCorrupt(n uint32, shift func() string) error {
	if c.corruptByte > 0 {
		return stack.Errorf("Feature corrupt_bio_byte duplicated", nil)
	}
	if n < 4 {
		return stack.Errorf("Feature corrupt_bio_byte requires 4 parameters", nil)
	}
	var ok bool
	if c.corruptByte, ok = readArg(shift(), 1, 1<<32-1); !ok {
		return stack.Errorf("Invalid corrupt bio byte", nil)
	}
	switch dir := shift(); {
	case kscan.EqualFold(dir, "w"):
		c.corruptWrite = true
	case kscan.EqualFold(dir, "r"):
		c.corruptWrite = false
	default:
		return stack.Errorf("Invalid corrupt bio direction (r or w)", nil)
	}
	v, ok := readArg(shift(), 0, 255)
	if !ok {
		return stack.Errorf("Invalid corrupt value to write into bio byte (0-255)", nil)
	}
	c.corruptValue = uint8(v)
	if c.corruptFlags, ok = readArg(shift(), 0, 1<<32-1); !ok {
		return stack.Errorf("Invalid corrupt bio flags mask", nil)
	}
	return nil
}

// parseRandom reads random_read_corrupt's or random_write_corrupt's
// probability into p. A probability of 0 leaves the feature off, so the
// kernel takes the same feature again.
func parseRandom(p *uint32, name string, n uint32, shift func() string) error {
	if *p > 0 {
		return stack.Errorf("Feature "+name+" duplicated", nil)
	}
	if n == 0 {
		return stack.Errorf("Feature "+name+" requires a parameter", nil)
	}
	v, ok := readArg(shift(), 0, probabilityBase)
	if !ok {
		return stack.Errorf("Invalid random corrupt argument", nil)
	}
	*p = v
	return nil
}
