package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/store"
)

// printError prints a failed command the way dmsetup does: the kernel's
// words for a refused table ("device-mapper: table: ..."), then
// "device-mapper: <op> ioctl on <name> ... failed: <strerror>", then
// "Command failed." Errors that are not the kernel's get one clear line.
func printError(w io.Writer, err error) {
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, ue.msg)
		fmt.Fprintln(w, "Command failed.")
		return
	}
	var ra *control.RemoveAllError
	if errors.As(err, &ra) {
		fmt.Fprintln(w, ra.Error())
		fmt.Fprintln(w, "Command failed.")
		return
	}
	if errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrSchemaTooNew) {
		fmt.Fprintln(w, "daxstack: "+err.Error())
		fmt.Fprintln(w, "Command failed.")
		return
	}
	var oe *control.OpError
	hasOp := errors.As(err, &oe)
	var te *stack.TableError
	if errors.As(err, &te) {
		if te.Device == "" || strings.HasPrefix(te.Text, "Invalid format") || strings.HasPrefix(te.Text, "Target type name") {
			fmt.Fprintln(w, te.Text) // dmsetup's own parser refused it
		} else {
			fmt.Fprintln(w, "device-mapper: table: "+te.Text)
		}
	} else if hasOp && oe.Op != "" && errors.Is(err, stack.ErrNotFound) && isReport(oe.Op) {
		fmt.Fprintln(w, "Device does not exist.")
		fmt.Fprintln(w, "Command failed.")
		return
	} else if hasOp {
		// The ioctl line says it all when the cause is only the device's
		// name behind a sentinel ("device does not exist: s0").
		switch d := detail(oe); {
		case d == oe.Device && oe.Op == "":
			// Nothing but the name behind a sentinel ("device does not
			// exist: nosuch"): say what is wrong with it.
			fmt.Fprintln(w, "daxstack: "+safeName(oe.Device)+": "+sentinelText(oe.Err))
		case d != oe.Device || oe.Op == "":
			fmt.Fprintln(w, "daxstack: "+d)
		}
	} else {
		fmt.Fprintln(w, "daxstack: "+err.Error())
	}
	if hasOp && oe.Op != "" {
		// libdm's shape: "on <name> <uuid><(maj:min)> failed", so a device
		// without a number leaves two spaces ("on foo  failed").
		devno, uuid := "", oe.UUID
		if oe.Devno != "" {
			devno = "(" + oe.Devno + ")"
		}
		if oe.Op == "message" {
			// dmsetup's message task names the device only.
			devno, uuid = "", ""
		}
		fmt.Fprintf(w, "device-mapper: %s ioctl on %s %s%s failed: %s\n", oe.Op, safeName(oe.Device), uuid, devno, control.Strerror(errno(err)))
	}
	fmt.Fprintln(w, "Command failed.")
}

// safeName is a device name as given, or quoted when it holds control
// characters (a refused name with a newline must not break the lines).
func safeName(name string) string {
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(name)
	}
	return name
}

// isReport reports whether dmsetup answers a missing device of op with
// "Device does not exist." (table prints its ioctl line instead, as the
// kernel oracle shows).
func isReport(op string) bool {
	return op == "info" || op == "status" || op == "deps"
}

// detail is the reason of an OpError without the sentinel's prefix.
func detail(oe *control.OpError) string {
	msg := oe.Err.Error()
	for _, s := range []error{stack.ErrBusy, stack.ErrNotFound, stack.ErrExists, stack.ErrInvalid, stack.ErrLoop} {
		msg = strings.TrimPrefix(msg, s.Error()+": ")
	}
	if oe.Device != "" && !strings.Contains(msg, oe.Device) {
		msg = safeName(oe.Device) + ": " + msg
	}
	return strings.TrimSpace(msg)
}

// sentinelText is the engine's word for err ("device does not exist").
func sentinelText(err error) string {
	for _, s := range []error{stack.ErrBusy, stack.ErrNotFound, stack.ErrExists, stack.ErrInvalid, stack.ErrLoop} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return control.Strerror(errno(err))
}

func errno(err error) syscall.Errno {
	var oe *control.OpError
	if errors.As(err, &oe) {
		return oe.Errno()
	}
	return stack.Errno(err)
}
