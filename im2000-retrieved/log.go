package main

import (
	"net/netip"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
)

// The lines retrieved logs besides lib/session's (im2000-log(5)), one
// function per kind of event: the format of each lives here, the LOGS
// section of im2000-retrieved(8) lists them (tests/logs_test.go holds it
// to that), and no other file of retrieved logs.

// logSession is lib/session's Server.Log: its lines carry their kind.
var logSession = fail.Log

// logFatal: retrieved cannot start (its store, its settings).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP that loaded; the names are the table's for retrieved
// (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("retrieved", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logStoreWarning: the store opened, but something about it is unsafe
// (store.Store.Warnings: open to other users).
func logStoreWarning(w string) {
	fail.Warning("store: %s", w)
}

// logSilenced: a recipient silenced a message (its identifier, the
// message's archive and identifier, the recipient).
func logSilenced(peer netip.AddrPort, id msgid.ID, account string, msg msgid.ID, rcpt addr.Mailbox) {
	fail.Info("silenced: %v: %s of %s/%s for %s", peer, id, account, msg, rcpt)
}

// logUnpinned: a recipient released a pinned message.
func logUnpinned(peer netip.AddrPort, id msgid.ID, account string, msg msgid.ID, rcpt addr.Mailbox) {
	fail.Info("unpinned: %v: %s of %s/%s for %s", peer, id, account, msg, rcpt)
}

// logStoreError: the store failed a command (a sidecar unreadable, a write
// that failed); answered errorinternalproblem.
func logStoreError(peer netip.AddrPort, err error) {
	fail.Warning("store error: %v: %v (answered errorinternalproblem)", peer, err)
}

// logNotRecorded: a retrieval's read status or a list count could not be
// written (a full disk); the message was served all the same, and the
// session tries again.
func logNotRecorded(peer netip.AddrPort, id msgid.ID, err error) {
	fail.Warning("status not recorded: %v: read status of %s not recorded, message served anyway (tried again later): %v", peer, id, err)
}

// logRecordedLater: a read status that failed was recorded by a later try.
func logRecordedLater(peer netip.AddrPort, id msgid.ID) {
	fail.Info("status recorded: %v: read status of %s recorded after all", peer, id)
}
