package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/trace"
)

// The lines gatewayd logs (im2000-log(5)), one function per kind of
// event: the format of each lives here, the LOGS section of
// im2000-gatewayd(8) lists them (tests/logs_test.go holds it to that), and
// no other file of gatewayd logs. A peer is addr:port; what a client chose
// (an address, a sender, an error's text) is escaped (lib/trace).

// logFatal: gatewayd cannot start (its settings, its certificate, its
// listener, stdin) or its listener failed; err carries the exit code.
func logFatal(err error) { fail.Fatal(err) }

// logSettings: the settings in force, in listener mode at start and after
// each SIGHUP that loaded; the names are the table's for gatewayd
// (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("gatewayd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logStopping: SIGTERM or SIGINT.
func logStopping(sig os.Signal) {
	fail.Info("shutting down: %v: closing every session", sig)
}

// logAcceptFailed: the listener's accept failed (EMFILE and the like);
// tried again after a pause.
func logAcceptFailed(err error) {
	fail.Warning("accept failed: %v; trying again", err)
}

func logListening(a net.Addr, conns int, account string) {
	fail.Info("listening: %v, at most %d SMTP sessions, archive of %s", a, conns, account)
}

// logTLS takes lib/tlsconf's lines about the certificate ("tls: ..."),
// which come without a kind, as lib/session's logTLS does.
func logTLS(format string, a ...any) {
	line := fmt.Sprintf(strings.TrimPrefix(format, "tls: "), a...)
	if strings.HasPrefix(format, "tls: keeping") {
		fail.Warning("tls: %s", line)
		return
	}
	fail.Info("tls: %s", line)
}

// logPanic: go-smtp stopped a session's panic (the client got 421).
func logPanic(msg string) {
	fail.Alert("panic serving %s", strings.TrimPrefix(msg, "panic serving "))
}

// logSMTP: go-smtp's own lines (a failed accept, a connection error).
func logSMTP(msg string) {
	fail.Warning("SMTP: %s", trace.Escape(msg))
}

// logNotCounted: the slot files could not be used; the session is let in.
func logNotCounted(peer net.Addr, err error) {
	fail.Warning("not counted: %v: counting sessions per address: %v; let in", peer, err)
}

// logRefused: a connection over sessionsperaddr.
func logRefused(peer net.Addr, n int) {
	fail.Warning("refused: %v: %d sessions from this address already (sessionsperaddr)", peer, n)
}

// logLimit: a session closed by its lifetime.
func logLimit(peer net.Addr, why string) {
	fail.Warning("limit: %v: %s, closed", peer, why)
}

// logRelayRefused: a recipient at a domain that is not this host's.
func logRelayRefused(peer net.Addr, rcpt string) {
	fail.Warning("relay refused: %v: to %s", peer, trace.Escape(rcpt))
}

// logNoSuchUser: a recipient at this host's domain without an account or
// list.
func logNoSuchUser(peer net.Addr, rcpt string) {
	fail.Warning("no such user: %v: %s", peer, trace.Escape(rcpt))
}

// logPostRefused: a post the list's smtp lines do not allow.
func logPostRefused(peer net.Addr, list, sender string) {
	fail.Warning("post refused: %v: to %s from <%s>", peer, trace.Escape(list), trace.Escape(sender))
}

// logMessageRefused: a message refused for its form (554 5.6.0).
func logMessageRefused(peer net.Addr, sender string, err error) {
	fail.Warning("message refused: %v: from <%s>: %s", peer, trace.Escape(sender), trace.Escape(err.Error()))
}

// logStored: a message committed to the archive.
func logStored(peer net.Addr, sender, id string, rcpts, lists int, results string) {
	fail.Info("stored: %v: from <%s>: %s for %d recipients and %d lists (%s)", peer, trace.Escape(sender), id, rcpts, lists, results)
}

// logNotStored: the store failed (451) or the archive is full (452); the
// sender's MTA tries again.
func logNotStored(peer net.Addr, err error) {
	fail.Warning("not stored: %v: %s", peer, trace.Escape(err.Error()))
}

// logPostSPFFail: a post by a member's right (smtp ADDRESS or smtp
// @DOMAIN) whose envelope sender's SPF result is fail.
func logPostSPFFail(peer net.Addr, list, sender string) {
	fail.Warning("post refused: %v: to %s from <%s>: SPF fail", peer, trace.Escape(list), trace.Escape(sender))
}

// logShareFull: a message over its client address's gatewayshare (452).
func logShareFull(peer net.Addr, sender string, n, pct int64) {
	fail.Warning("share full: %v: from <%s>: %d octets over this address's %d%% of the quota (gatewayshare)", peer, trace.Escape(sender), n, pct)
}

// logShareNotCounted: the share's bucket could not be used; let in.
func logShareNotCounted(peer net.Addr, err error) {
	fail.Warning("not counted: %v: this address's share of the quota (gatewayshare): %v; let in", peer, err)
}
