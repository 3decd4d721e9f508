package uevent

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// These errors can be returned by this package. Match them with errors.Is.
var (
	// ErrOverrun is returned by Next when the kernel dropped uevents
	// because the socket's receive buffer was full. It wraps ENOBUFS.
	// The Listener keeps working; the caller must rescan the state the
	// lost events were about.
	ErrOverrun = fmt.Errorf("uevent: events lost, receive buffer overrun: %w", unix.ENOBUFS)

	// ErrClosed is returned by Next once the Listener is closed. It wraps
	// os.ErrClosed.
	ErrClosed = fmt.Errorf("uevent: listener closed: %w", os.ErrClosed)

	// ErrMalformed is returned by Parse for a message that is not a
	// uevent in either format.
	ErrMalformed = errors.New("uevent: malformed message")
)
