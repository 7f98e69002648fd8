package main

import (
	"net/netip"

	"im2000/lib/conf"
	"im2000/lib/fail"
)

// The lines agentd logs besides lib/session's (im2000-log(5)), one
// function per kind of event: the format of each lives here, the LOGS
// section of im2000-agentd(8) lists them (tests/logs_test.go holds it to
// that), and no other file of agentd logs.

// logSession is lib/session's Server.Log: its lines carry their kind.
var logSession = fail.Log

// logFatal: agentd cannot start (its spool, its settings).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP; the names are the table's for agentd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("agentd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logNotify: one line per Notify command, whatever came of it.
func logNotify(peer netip.AddrPort, n, accepted, full, refused int) {
	fail.Info("notify: %v: %d notifications, %d accepted, %d full, %d refused", peer, n, accepted, full, refused)
}

// logRefusedSender: a notification answered refused. err quotes the
// sender as a Go string (agent.CheckSender): no control character of it
// reaches the log.
func logRefusedSender(peer netip.AddrPort, err error) {
	fail.Warning("refused sender: %v: %v", peer, err)
}

// logRateUnusable: the submitter's bucket file cannot be used; what it
// sent is answered full until it is mended.
func logRateUnusable(peer netip.AddrPort, key string, err error) {
	fail.Warning("rate unusable: %v: bucket %s: %v (answering full)", peer, key, err)
}

func logOverRate(peer netip.AddrPort, key string, over int) {
	fail.Warning("over rate: %v: %s: %d notifications answered full", peer, key, over)
}

// logSpoolFull: a recipient's spool at its quota, or the disk at its
// reserve.
func logSpoolFull(peer netip.AddrPort, account string, full int) {
	fail.Warning("spool full: %v: %s: spool or disk full, %d notifications answered full", peer, account, full)
}

// logNoRoom: statfs(2) of the spool failed; the Notify is answered
// errorinternalproblem.
func logNoRoom(peer netip.AddrPort, err error) {
	fail.Warning("free space unknown: %v: %v (answered errorinternalproblem)", peer, err)
}

// logNotKept: a notification could not be written for a reason other
// than a full disk; the Notify is answered errorinternalproblem, and the
// store sends it all again.
func logNotKept(peer netip.AddrPort, account string, err error) {
	fail.Warning("not kept: %v: a notification for %s: %v (answered errorinternalproblem)", peer, account, err)
}
