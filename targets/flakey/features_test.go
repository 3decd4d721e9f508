package flakey

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/internal/oracle/transcript"
	"github.com/daxstack/daxstack/stack"
)

// TestConstructorWords covers mainline's refusals and readings the
// transcript (6.1) does not have, from drivers/md/dm-flakey.c's
// flakey_ctr and parse_features. refused is the kernel's ti->error; table
// is what an accepted table prints back (mainline's flakey_status).
func TestConstructorWords(t *testing.T) {
	tests := []struct {
		params  string
		refused string
		table   string
	}{
		{params: "/dev/ram0 0 1", refused: "Invalid argument count"},
		{params: "/dev/ram0 0 4294967295 2", refused: "Interval overflow"},
		{params: "/dev/ram0 0 4294967296 1", table: "1:0 0 0 1 2 error_reads error_writes"}, // %u wraps
		{params: `/dev/ram0 0 \ 5 1`, table: "1:0 0 5 1 2 error_reads error_writes"},        // and skips white space
		{params: "/dev/ram0 0 5 +1", refused: "Invalid down interval"},
		{params: "/dev/ram0 0 1 1 12 a b c d e f g h i j k l", refused: "Invalid number of feature args"},
		{params: "/dev/ram0 0 1 1 11 error_reads", refused: "Invalid number of feature args"},
		{params: "/dev/ram0 0 1 1 0", table: "1:0 0 1 1 2 error_reads error_writes"},
		{params: "/dev/ram0 0 1 1 2 error_reads error_reads", refused: "Feature error_reads duplicated"},
		{params: "/dev/ram0 0 1 1 2 error_writes error_writes", refused: "Feature error_writes duplicated"},
		{params: "/dev/ram0 0 1 1 2 error_writes drop_writes", refused: "Feature drop_writes conflicts with feature error_writes"},
		{params: "/dev/ram0 0 1 1 2 drop_writes error_writes", refused: "Feature error_writes conflicts with feature drop_writes"},
		{params: "/dev/ram0 0 1 1 10 corrupt_bio_byte 1 r 0 0 corrupt_bio_byte 1 r 0 0", refused: "Feature corrupt_bio_byte duplicated"},
		{params: "/dev/ram0 0 1 1 5 corrupt_bio_byte 4294967296 r 0 0", refused: "Invalid corrupt bio byte"},
		{params: "/dev/ram0 0 1 1 5 corrupt_bio_byte 4294967297 R 0 0", table: "1:0 0 1 1 5 corrupt_bio_byte 1 r 0 0"},
		{params: "/dev/ram0 0 1 1 5 corrupt_bio_byte 1 rw 0 0", refused: "Invalid corrupt bio direction (r or w)"},
		{params: "/dev/ram0 0 1 1 5 corrupt_bio_byte 1 W 255 4294967295", table: "1:0 0 1 1 5 corrupt_bio_byte 1 w 255 4294967295"},
		{params: "/dev/ram0 0 1 1 5 corrupt_bio_byte 1 w 0 x", refused: "Invalid corrupt bio flags mask"},
		{params: "/dev/ram0 0 1 1 4 random_read_corrupt 1 random_read_corrupt 2", refused: "Feature random_read_corrupt duplicated"},
		{params: "/dev/ram0 0 1 1 4 random_read_corrupt 0 random_read_corrupt 2", table: "1:0 0 1 1 2 random_read_corrupt 2"},
		{params: "/dev/ram0 0 1 1 2 random_read_corrupt 0", table: "1:0 0 1 1 2 error_reads error_writes"},
		{params: "/dev/ram0 0 1 1 1 random_read_corrupt", refused: "Feature random_read_corrupt requires a parameter"},
		{params: "/dev/ram0 0 1 1 2 random_read_corrupt 1000000001", refused: "Invalid random corrupt argument"},
		{params: "/dev/ram0 0 1 1 2 random_write_corrupt 1000000000", table: "1:0 0 1 1 2 random_write_corrupt 1000000000"},
		{params: "/dev/ram0 0 1 1 4 random_write_corrupt 1 random_write_corrupt 1", refused: "Feature random_write_corrupt duplicated"},
		{params: "/dev/ram0 0 1 1 1 random_write_corrupt", refused: "Feature random_write_corrupt requires a parameter"},
		{params: "/dev/ram0 0 1 1 3 drop_writes random_write_corrupt 5", refused: "drop_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set"},
		{params: "/dev/ram0 0 1 1 3 error_writes random_write_corrupt 5", refused: "error_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set"},
		{params: "/dev/ram0 0 1 1 3 error_reads random_read_corrupt 5", refused: "error_reads is incompatible with random_read_corrupt or corrupt_bio_byte with the READ flag set"},
		{params: "/dev/ram0 0 1 1 6 error_reads corrupt_bio_byte 1 r 0 0", refused: "error_reads is incompatible with random_read_corrupt or corrupt_bio_byte with the READ flag set"},
		{params: "/dev/ram0 0 1 1 6 error_reads corrupt_bio_byte 1 w 0 0", table: "1:0 0 1 1 6 error_reads corrupt_bio_byte 1 w 0 0"},
		{params: "/dev/ram0 0 1 1 3 drop_writes random_read_corrupt 5", table: "1:0 0 1 1 3 drop_writes random_read_corrupt 5"},
		{params: "/dev/ram0 0 1 1 4 random_write_corrupt 5 random_read_corrupt 7", table: "1:0 0 1 1 4 random_read_corrupt 7 random_write_corrupt 5"},
		{params: "/dev/ram0 0 1 1 2 DROP_WRITES Error_Reads", table: "1:0 0 1 1 2 error_reads drop_writes"},
		{params: "/dev/ram0 0 1 1 1 drop_writes junk after the features", table: "1:0 0 1 1 1 drop_writes"},
		{params: "/dev/ram0 0 1 1 1 bogus junk", refused: "Unrecognised flakey feature requested"},
		{params: "/dev/nonexist 0 1 1 1 bogus", refused: "Unrecognised flakey feature requested"}, // features before the device
		{params: "/dev/ram0 x 1 1 1 bogus", refused: "Invalid device sector"},
		{params: "/dev/ram0 18446744073709551615 1 1", refused: "Invalid device sector"},
	}
	for _, tc := range tests {
		p := transcript.NewRamdisks(true).Pool()
		d, err := p.Create("f", "")
		if err != nil {
			t.Fatal(err)
		}
		tab, err := p.Build(d, []stack.Line{{No: 1, Len: 1024, Type: "flakey", Params: tc.params}})
		if tc.refused != "" {
			var te *stack.TableError
			if !errors.As(err, &te) || te.Text != "f: flakey: "+tc.refused+" (-EINVAL)" || !errors.Is(err, syscall.EINVAL) {
				t.Errorf("%q: %v, want refused with %q", tc.params, err, tc.refused)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.params, err)
			continue
		}
		if got := tab.Segments()[0].Target.Table(); got != tc.table {
			t.Errorf("%q prints %q, want %q", tc.params, got, tc.table)
		}
	}
}

// TestDeviceLookupErrno: a failed lookup keeps dm_get_device's errno
// (-ENODEV for a path that is no block device, as the transcript shows).
func TestDeviceLookupErrno(t *testing.T) {
	p := transcript.NewRamdisks(true).Pool()
	d, _ := p.Create("f", "")
	_, err := p.Build(d, []stack.Line{{No: 1, Len: 8, Type: "flakey", Params: "/dev/nonexist 0 1 1"}})
	var te *stack.TableError
	if !errors.As(err, &te) || !strings.HasPrefix(te.Text, "f: flakey: Device lookup failed (-ENODEV)") || !errors.Is(err, syscall.ENODEV) {
		t.Errorf("%v", err)
	}
}
