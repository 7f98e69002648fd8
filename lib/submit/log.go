package submit

import (
	"im2000/lib/fail"
	"im2000/lib/msgid"
)

// The one line lib/submit logs itself, in im2000-log(5)'s vocabulary; a
// daemon (im2000-smtpd) passes Request.NotRecorded to log it from its own
// log.go, with the session's peer and account, instead.

// logNotRecorded: a remote submission is committed at the store but not
// in the sent log (its directory missing, a permission): im2000-status
// will not list it, though its id still tracks and cancels it.
func logNotRecorded(id msgid.ID, sentlog string, err error) {
	fail.Warning("not recorded: %s is committed at the remote store, but not in the sent log %q: %v; im2000-status lists it only by its id", id, sentlog, err)
}
