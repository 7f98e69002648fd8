package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
)

// The lines smtpd logs (im2000-log(5)), one function per kind of event:
// the format of each lives here, the LOGS section of im2000-smtpd(8)
// lists them (tests/logs_test.go holds it to that), and no other file of
// smtpd logs. A peer is addr:port; what a client chose (a user name) is
// quoted as a Go string.

// logFatal: smtpd cannot start (its settings, its certificate, its
// listener, stdin that is no socket); err carries the exit code.
func logFatal(err error) { fail.Fatal(err) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP that loaded; the names are the table's for smtpd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("smtpd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

func logListening(a net.Addr, tls bool, conns int) {
	fail.Info("listening: %v%s, at most %d SMTP sessions", a, map[bool]string{true: " (TLS)"}[tls], conns)
}

func logStopping(sig os.Signal) {
	fail.Info("shutting down: %v: closing every session", sig)
}

// logTLS takes lib/tlsconf's lines about the certificate ("tls: ..."),
// which come without a kind, as lib/session's logTLS does: keeping the
// old pair because the new one does not load is a warning, a pair loaded
// is news.
func logTLS(format string, a ...any) {
	line := fmt.Sprintf(strings.TrimPrefix(format, "tls: "), a...)
	if strings.HasPrefix(format, "tls: keeping") {
		fail.Warning("tls: %s", line)
		return
	}
	fail.Info("tls: %s", line)
}

// logPanic: go-smtp stopped a panic in a command (421 to the client, the
// session closed); first is its "ADDR: VALUE", at the functions below the
// panic.
func logPanic(first, at string) {
	fail.Alert("panic in the SMTP session with %s, at %s", first, at)
}

// logLibrary: anything else go-smtp reports (an accept error, a session
// that ended in an error).
func logLibrary(msg string) {
	fail.Warning("go-smtp: %q", msg)
}

// logCleartext: AUTH tried where a password may not cross in cleartext;
// answered 538.
func logCleartext(peer net.Addr) {
	fail.Warning("cleartext password refused: %v: AUTH: a password in cleartext from a non-loopback address (have clients use STARTTLS or the -tls port, or set cleartextauth to 1 if the network is trusted)", peer)
}

// logAuthUnchecked: the password could not be checked now (the passwords
// file, the remote store, the per-address delays); answered 454.
func logAuthUnchecked(peer net.Addr, user string, err error) {
	fail.Warning("AUTH unchecked: %v: %q: %q (answered 454)", peer, user, err.Error())
}

// logAuthFailed: a wrong user name or password; answered 535.
func logAuthFailed(peer net.Addr, user string) {
	fail.Warning("AUTH failed: %v: %q", peer, user)
}

func logAuthenticated(peer net.Addr, user string) {
	fail.Info("authenticated: %v: %q", peer, user)
}

// logStored: a message stored in the account's archive.
func logStored(peer net.Addr, account, id string, rcpts int) {
	fail.Info("stored: %v: %s: %s for %d recipients", peer, account, id, rcpts)
}

// logNotStored: a message refused or not stored (answered 4xx or 5xx).
func logNotStored(peer net.Addr, account string, err error) {
	fail.Warning("not stored: %v: %s: %q", peer, account, err.Error())
}

// logNotRecorded: with a remote store, a message stored there but not
// in the account's sent log (sentlog), so that its remote im2000-status
// does not list it.
func logNotRecorded(peer net.Addr, account string, id msgid.ID, sentlog string, err error) {
	fail.Warning("not recorded: %v: %s: %s is stored at the remote store, but not in the sent log %q: %q", peer, account, id, sentlog, err.Error())
}

// logLimit: a session closed by its lifetime or its time to authenticate
// (sessionlifetime, authtimeout).
func logLimit(peer net.Addr, why string) {
	fail.Warning("limit: %v: %s, closed", peer, why)
}

// logNotCounted: the slot files could not be used; the session is let in.
func logNotCounted(peer net.Addr, err error) {
	fail.Warning("not counted: %v: counting sessions per address: %v; let in", peer, err)
}

// logRefused: a connection over sessionsperaddr, answered 421.
func logRefused(peer net.Addr, n int) {
	fail.Warning("refused: %v: %d sessions from this address already (sessionsperaddr), 421 sent", peer, n)
}

// logThrottled: an AUTH from an address whose failures are delayed past
// authmaxdelay, refused unchecked (answered 454).
func logThrottled(peer net.Addr, err error) {
	fail.Warning("AUTH refused unchecked: %v: %v", peer, err)
}

// logAcceptFailed: the listener's accept failed (EMFILE and the like);
// tried again after a pause.
func logAcceptFailed(err error) {
	fail.Warning("accept failed: %v; trying again", err)
}
