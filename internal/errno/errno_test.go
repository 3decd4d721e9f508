package errno

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

func TestSentinel(t *testing.T) {
	busy := New("device or resource busy", syscall.EBUSY)
	other := New("device or resource busy", syscall.EBUSY)
	wrapped := fmt.Errorf("remove top: %w", busy)
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"itself", wrapped, busy, true},
		{"its errno", wrapped, syscall.EBUSY, true},
		{"another errno", wrapped, syscall.EINVAL, false},
		{"another sentinel with the same text", wrapped, other, false},
		{"fs.ErrExist does not match by text", wrapped, fs.ErrExist, false},
	}
	for _, tc := range tests {
		if got := errors.Is(tc.err, tc.target); got != tc.want {
			t.Errorf("%s: errors.Is = %v, want %v", tc.name, got, tc.want)
		}
	}
	if wrapped.Error() != "remove top: device or resource busy" {
		t.Errorf("message %q", wrapped.Error())
	}
}

func TestOf(t *testing.T) {
	tests := []struct {
		err    error
		want   syscall.Errno
		wantOK bool
	}{
		{fmt.Errorf("x: %w", New("gone", syscall.ENXIO)), syscall.ENXIO, true},
		{fmt.Errorf("y: %w", syscall.EROFS), syscall.EROFS, true},
		// The sentinel wins over an errno further down the chain.
		{fmt.Errorf("%w: %w", New("loop", syscall.ELOOP), syscall.EINVAL), syscall.ELOOP, true},
		{errors.New("plain"), 0, false},
		{nil, 0, false},
	}
	for _, tc := range tests {
		got, ok := Of(tc.err)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Of(%v) = %v, %v; want %v, %v", tc.err, got, ok, tc.want, tc.wantOK)
		}
	}
}

// isEIO is an error that says it is EIO only through its Is method.
type isEIO struct{}

func (isEIO) Error() string        { return "bad block" }
func (isEIO) Is(target error) bool { return target == syscall.EIO }

func TestOfAsksIs(t *testing.T) {
	if e, ok := Of(fmt.Errorf("wrapped: %w", isEIO{})); !ok || e != syscall.EIO {
		t.Fatalf("Of = %v, %v; want EIO", e, ok)
	}
	if _, ok := Of(errors.New("plain")); ok {
		t.Fatal("a plain error has an errno")
	}
}
