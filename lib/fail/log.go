package fail

import (
	"errors"
	"os"
)

// The vocabulary of the logs (qmail-log's manner, DESIGN-NOTES.md "Logs",
// im2000-log(5)): every line a daemon writes is "name: KIND: EVENT: ...",
// KIND one of these, EVENT a fixed phrase its man page lists, so that
//
//	grep -E ': (warning|alert|fatal): ' log
//
// finds all trouble and nothing else. Programs do not call these from
// anywhere but their log.go, which holds one function per kind of event.
const (
	// KindInfo is a normal event: a session served, notifications
	// accepted, a setting reloaded. Nothing to do.
	KindInfo = "info"
	// KindWarning is something wrong that was handled: a peer's bad PDU, a
	// refused login, a limit reached, a setting that did not load. The
	// program goes on; the admin may want to look.
	KindWarning = "warning"
	// KindAlert is what must never happen (a bug): a panic stopped at a
	// session's boundary. The program goes on; the tests fail on any.
	KindAlert = "alert"
	// KindFatal is the program stopping because it cannot go on: a daemon
	// that cannot start (its settings, its spool). Its supervisor restarts
	// it; the line says what to mend.
	KindFatal = "fatal"
)

// Kinds lists every kind, for the tests that hold the logs to them.
var Kinds = []string{KindInfo, KindWarning, KindAlert, KindFatal}

// Info logs "name: info: message", a normal event.
func Info(format string, a ...any) { Warn(KindInfo+": "+format, a...) }

// Warning logs "name: warning: message": something wrong, handled.
func Warning(format string, a ...any) { Warn(KindWarning+": "+format, a...) }

// Alert logs "name: alert: message": something that must never happen
// did (a panic stopped at a session's boundary). The program carries on;
// the tests fail on any alert in a program's log.
func Alert(format string, a ...any) { Warn(KindAlert+": "+format, a...) }

// Fatal logs "name: fatal: ERR" and exits with err's code (Code): a
// daemon that cannot start or cannot go on. A command run by a user ends
// with Exit instead, whose message has no kind.
func Fatal(err error) {
	if err == nil { // a bug in the caller: still not exit 0, which says all is well
		err = errors.New("stopped without an error (a bug)")
	}
	Warn("%s: %v", KindFatal, err)
	os.Exit(Code(err))
}

// Log writes "name: line" for a line that carries its kind already: it is
// what a program's log.go gives lib/session as Server.Log, whose lines
// (im2000-log(5)) begin with their kind.
func Log(format string, a ...any) { Warn(format, a...) }
