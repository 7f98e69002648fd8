// Package fail ends a program the qmail way: a message on stderr that starts
// with the program's name, and exit code 100 for a permanent failure (the same
// input will fail again) or 111 for a temporary one (try again later).
package fail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Exit codes.
const (
	OK        = 0
	Permanent = 100
	Temporary = 111
)

// Name is the program's name as it prefixes every message.
var Name = filepath.Base(os.Args[0])

// Error carries an exit code with an error, so that library code can say
// whether a failure is permanent without exiting itself.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Perm marks err as permanent.
func Perm(err error) error { return &Error{Permanent, err} }

// Temp marks err as temporary.
func Temp(err error) error { return &Error{Temporary, err} }

// Code returns the exit code for err: 0 for nil, the marked code for an
// *Error, and Temporary for anything unmarked, because an unknown failure
// must never make a sender give up on a message.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Temporary
}

// Stderr is where messages go; tests replace it.
var Stderr io.Writer = os.Stderr

// Warn prints "name: message" on stderr: a command's message to the user
// who ran it. A daemon's log lines go through the kinds of log.go instead.
func Warn(format string, a ...any) {
	fmt.Fprintf(Stderr, "%s: %s\n", Name, fmt.Sprintf(format, a...))
}

// Recover, deferred at the boundary of a session or of one unit of work
// (defer fail.Recover("session with " + peer)), stops a panic there: it
// logs an alert with the panic's value and a short stack, and the
// function that deferred it returns normally (with its zero results).
func Recover(what string) {
	if v := recover(); v != nil {
		Alert("%s", Panicked(what, v))
	}
}

// Panicked describes a recovered panic on one line: "panic in what:
// value, at f (file.go:12) < g (file.go:34) ...". Call it in the deferred
// function that recovered, while the panicking stack is still there.
func Panicked(what string, v any) string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	var all []runtime.Frame
	for {
		f, more := frames.Next()
		all = append(all, f)
		if !more {
			break
		}
	}
	// The frames above runtime.gopanic are the recovering ones; the
	// runtime's own below it (panicIndex and the like) say nothing.
	start := 0
	for i, f := range all {
		if f.Function == "runtime.gopanic" {
			start = i + 1
			break
		}
	}
	for start < len(all) && strings.HasPrefix(all[start].Function, "runtime.") {
		start++
	}
	var at []string
	for _, f := range all[start:] {
		if len(at) == 6 || f.Function == "runtime.goexit" {
			break
		}
		fn := f.Function[strings.LastIndex(f.Function, "/")+1:]
		at = append(at, fmt.Sprintf("%s (%s:%d)", fn, filepath.Base(f.File), f.Line))
	}
	return fmt.Sprintf("panic in %s: %v, at %s", what, v, strings.Join(at, " < "))
}

// Exit prints err (if any) and exits with its code.
func Exit(err error) {
	if err != nil {
		Warn("%v", err)
	}
	os.Exit(Code(err))
}

// Usage prints a usage error and exits 100.
func Usage(format string, a ...any) {
	Warn(format, a...)
	os.Exit(Permanent)
}

// NoArgs handles the command line of a program that takes none: -h prints
// usage and exits 0, anything else is a usage error.
func NoArgs(usage string) {
	for _, a := range os.Args[1:] {
		if a == "-h" || a == "--help" {
			fmt.Println(usage)
			os.Exit(OK)
		}
		Usage("unexpected argument %q\n%s", a, usage)
	}
}
