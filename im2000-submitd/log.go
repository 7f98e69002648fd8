package main

import (
	"net/netip"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
)

// The lines submitd logs besides lib/session's (im2000-log(5)), one
// function per kind of event: the format of each lives here, the LOGS
// section of im2000-submitd(8) lists them (tests/logs_test.go holds it to
// that), and no other file of submitd logs.

// logSession is lib/session's Server.Log: its lines carry their kind.
var logSession = fail.Log

// logFatal: submitd cannot start (its store, its settings).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP that loaded; the names are the table's for submitd
// (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("submitd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logStoreWarning: the store opened, but something about it is unsafe or
// unkempt (store.Store.Warnings: open to other users, an index directory
// that cannot be closed).
func logStoreWarning(w string) {
	fail.Warning("store: %s", w)
}

// logLogin: an account authenticated.
func logLogin(peer netip.AddrPort, account string) {
	fail.Info("login: %v: %s", peer, account)
}

// logLoginFailed: a wrong password or an unknown account (answered
// alike). The name tried is not logged: it is often a password typed in
// the wrong field.
func logLoginFailed(peer netip.AddrPort) {
	fail.Warning("login failed: %v: wrong account or password", peer)
}

// logCleartext: a password over cleartext where it may not come
// (session.ClearAuthRefused says what to do).
func logCleartext(peer netip.AddrPort) {
	fail.Warning("cleartext refused: %v: %s", peer, session.ClearAuthRefused)
}

// logAuthBroken: the check itself failed (the passwords file unreadable,
// checkpassword broken); answered errorinternalproblem.
func logAuthBroken(peer netip.AddrPort, err error) {
	fail.Warning("auth broken: %v: %v (answered errorinternalproblem)", peer, err)
}

// logArchiveBroken: an account's archive cannot be opened, or a message
// of it read; answered errorinternalproblem.
func logArchiveBroken(peer netip.AddrPort, account string, err error) {
	fail.Warning("archive broken: %v: %s: %v (answered errorinternalproblem)", peer, account, err)
}

// logEnvelopeCut: an envelope naming recipients twice or more than
// maxrcpt distinct ones.
func logEnvelopeCut(peer netip.AddrPort, account string, n, kept, over int, maxRcpt int64) {
	fail.Warning("envelope cut: %v: %s: an envelope of %d recipients: %d distinct kept, %d over maxrcpt (%d) refused", peer, account, n, kept, over, maxRcpt)
}

// logListsUnreadable: who may post to a list cannot be read (lists/);
// the list is answered submissionaccessdenied.
func logListsUnreadable(peer netip.AddrPort, err error) {
	fail.Warning("list unreadable: %v: %v (answered submissionaccessdenied)", peer, err)
}

// logNoAddress: the account and me make no address (a bad me); answered
// errorinternalproblem.
func logNoAddress(peer netip.AddrPort, account, me string, err error) {
	fail.Warning("no address: %v: account %s at %s: %v (answered errorinternalproblem)", peer, account, me, err)
}

// logSenderRefused: the From rule refused a submission (err says which
// address and why, quoted), or senders/ could not be read.
func logSenderRefused(peer netip.AddrPort, account string, err error) {
	fail.Warning("submission refused: %v: %s: %v", peer, account, err)
}

// logSubmitted: a message committed to the account's archive.
func logSubmitted(peer netip.AddrPort, account string, id msgid.ID, size int64, rcpts, lists int) {
	fail.Info("submitted: %v: %s submitted %s: %d bytes, %d recipients, %d lists", peer, account, id, size, rcpts, lists)
}

// logAborted: a submission given up (too large, over quota, a full disk,
// a write that failed); nothing of it stays.
func logAborted(peer netip.AddrPort, account string, err error) {
	fail.Warning("submission aborted: %v: %s: %v", peer, account, err)
}

// logResent: a message whose recipients its sender had notified again
// (MSOAP Resend), how many, how many of them it made due sooner, and how
// many only after resendfloor; logged only when some moved.
func logResent(peer netip.AddrPort, account string, id msgid.ID, r store.Resent) {
	fail.Info("resent: %v: %s resent %s to %d recipients, %d made due sooner, %d held by resendfloor", peer, account, id, r.Recipients, r.Moved, r.Held)
}

// logCancelled: a message cancelled by its sender.
func logCancelled(peer netip.AddrPort, account string, id msgid.ID) {
	fail.Info("cancelled: %v: %s cancelled %s", peer, account, id)
}
