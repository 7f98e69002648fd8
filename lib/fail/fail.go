// Package fail ends a program the qmail way: a message on stderr that starts
// with the program's name, and exit code 100 for a permanent failure (the same
// input will fail again) or 111 for a temporary one (try again later).
package fail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// Warn prints "name: message" on stderr.
func Warn(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", Name, fmt.Sprintf(format, a...))
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
