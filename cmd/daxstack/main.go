// Command daxstack composes DAX devices into device-mapper-style stacks in
// user space, does I/O through them, and translates bad ranges on a leaf
// into bad ranges on every device above it.
//
// It is driven like dmsetup (same verbs, table syntax and output shapes,
// options before or after the device names) plus its own verbs for
// mapping, reverse mapping, failure injection and the event stream. Each
// verb parses its arguments, calls the engine (package control) either in
// this process or through the daemon's socket, and prints. Invoked by the
// name dmsetup (a link), it is dmsetup: its verbs, options and output only
// (dmsetup.go). See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	_ "github.com/daxstack/daxstack/targets/all"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one daxstack command line and returns its exit status:
// 0 on success, 1 on any failure, as dmsetup.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dm := len(args) > 0 && filepath.Base(args[0]) == "dmsetup"
	app := newApp(stdin, stdout, stderr, dm)
	if dm && len(args) < 2 {
		// dmsetup without a command: its usage, on stderr, and failure.
		app.Writer = stderr
		app.Run([]string{args[0], "help"})
		return 1
	}
	argv, err := permute(app, args)
	if err == nil {
		argv = dmsetupVersion(app, argv)
		err = app.RunContext(ctx, argv)
	}
	if err == nil {
		return 0
	}
	var shown errShown
	var oe optionError
	switch {
	case errors.As(err, &shown):
	case errors.As(err, &oe) && oe.bare:
		fmt.Fprintln(stderr, oe.msg)
	case errors.As(err, &oe):
		fmt.Fprintf(stderr, "%s: %s\n", app.Name, oe.msg)
	default:
		printError(stderr, err)
	}
	return 1
}

// errShown wraps an error that a command already printed.
type errShown struct{ error }

// usageError is a command line the verb cannot run; it prints with the
// verb's usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }
