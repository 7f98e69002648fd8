package auth

import (
	"time"

	"im2000/lib/fail"
	"im2000/lib/trace"
)

// The lines lib/auth logs (im2000-log(5)), one function per kind of
// event, in the log of the program that checks passwords with a Limiter:
// im2000-pop3d, im2000-imapd, im2000-smtpd, im2000-submitd and
// im2000-queryd. The format of each lives here; the LOGS section of each
// of those pages and im2000-log(5)'s "Lines of the password checks" list
// them (tests/logs_test.go holds them to that), and no other file of
// lib/auth logs.

// logNotReserved: Ready could not reserve the answer to a failure in the
// limiter's files (the directory full, out of inodes): a failure is then
// answered after the longest delay, so that a limit that stopped
// counting does not become no limit.
func logNotReserved(dir string, err error, longest time.Duration) {
	fail.Warning("failures not counted: %s: cannot reserve an answer: %s (a failure is answered after the longest delay, %v)", dir, trace.Escape(err.Error()), longest)
}

// logNotRecorded: FailAt or Fail could not record a failure; it is
// answered after the longest delay.
func logNotRecorded(dir string, err error, longest time.Duration) {
	fail.Warning("failures not counted: %s: cannot record one: %s (answered after the longest delay, %v)", dir, trace.Escape(err.Error()), longest)
}
