package main

import (
	"net/netip"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
)

// The lines queryd logs besides lib/session's (im2000-log(5)), one
// function per kind of event: the format of each lives here, the LOGS
// section of im2000-queryd(8) lists them (tests/logs_test.go holds it to
// that), and no other file of queryd logs.

// logSession is lib/session's Server.Log: its lines carry their kind.
var logSession = fail.Log

// logFatal: queryd cannot start (its spool, its settings).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP; the names are the table's for queryd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("queryd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logLogin: an account authenticated.
func logLogin(peer netip.AddrPort, account string) {
	fail.Info("login: %v: %s", peer, account)
}

// logLoginFailed: a wrong password, or an account without a spool (the
// client cannot tell them apart). The account name is not logged: it is
// often a password typed in the wrong field.
func logLoginFailed(peer netip.AddrPort) {
	fail.Warning("login failed: %v: wrong account or password", peer)
}

// logCleartext: a password over cleartext where it may not come
// (session.ClearAuthRefused says what to do).
func logCleartext(peer netip.AddrPort) {
	fail.Warning("cleartext refused: %v: %s", peer, session.ClearAuthRefused)
}

// logAuthError: the check itself failed (the passwords file unreadable,
// checkpassword broken); answered errorinternalproblem.
func logAuthError(peer netip.AddrPort, err error) {
	fail.Warning("auth broken: %v: %v (answered errorinternalproblem)", peer, err)
}

// logTook: a retrieveandclear answered.
func logTook(peer netip.AddrPort, account string, n int) {
	fail.Info("took: %v: %s took %d notifications", peer, account, n)
}

// logListFailed: the account's spool directory could not be read;
// answered errorinternalproblem.
func logListFailed(peer netip.AddrPort, account string, err error) {
	fail.Warning("spool unreadable: %v: %s: %v (answered errorinternalproblem)", peer, account, err)
}
