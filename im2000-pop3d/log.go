package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
	"im2000/lib/trace"
)

// The lines pop3d logs (im2000-log(5)), one function per kind of event:
// the format of each lives here, the LOGS section of im2000-pop3d(8)
// lists them (tests/logs_test.go holds it to that), and no other file of
// pop3d logs. A peer is addr:port; what a client or a store chose (a user
// name, a sender, an error's text) is quoted or escaped (lib/trace).

// logFatal: pop3d cannot start (its settings, its certificate, its
// listener, stdin); err carries the exit code.
func logFatal(err error) { fail.Fatal(err) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP that loaded; the names are the table's for pop3d (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("pop3d", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

func logListening(a net.Addr, tls bool, conns int) {
	fail.Info("listening: %v%s, at most %d POP3 sessions", a, map[bool]string{true: " (TLS)"}[tls], conns)
}

// logAcceptFailed: the listener's accept failed (EMFILE and the like);
// tried again after a pause.
func logAcceptFailed(err error) {
	fail.Warning("accept failed: %v; trying again", err)
}

func logStopping(sig os.Signal) {
	fail.Info("shutting down: %v", sig)
}

// textLog is how lib/session's RunText logs the listener and the
// sessions per address: with the functions here.
func textLog(d conf.Dir) session.TextLog {
	return session.TextLog{Listening: logListening, Settings: func() { logSettings(d) }, ReloadFailed: logReloadFailed,
		Stopping: logStopping, AcceptFailed: logAcceptFailed, NotCounted: logNotCounted, Refused: logRefused}
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

// logPanic: a session's panic stopped at its boundary (the client got
// -ERR, the session closed).
func logPanic(peer string, v any) {
	fail.Alert("panic in %s", strings.TrimPrefix(fail.Panicked("the POP3 session with "+peer, v), "panic in "))
}

func logNoNetConn(peer string) {
	fail.Alert("TLS on no net.Conn: %s: closed", peer)
}

func logHandshake(peer string, err error) {
	fail.Warning("TLS handshake failed: %s: %v", peer, err)
}

// logSTLSInjection: commands pipelined after STLS in cleartext; the
// session is closed (RFC 2595 section 4).
func logSTLSInjection(peer string) {
	fail.Warning("STLS injection: %s: commands pipelined after STLS in cleartext, closed", peer)
}

// logCleartext: USER, PASS or AUTH where a password may not cross in
// cleartext.
func logCleartext(peer, verb string) {
	fail.Warning("cleartext password refused: %s: %s: a password in cleartext from a non-loopback address (have clients use STLS or the -tls port, or set cleartextauth to 1 if the network is trusted)", peer, verb)
}

// logLimit: a session closed by its lifetime or its time to log in.
func logLimit(peer, why string) {
	fail.Warning("limit: %s: %s, closed", peer, why)
}

// logNotCounted: the slot files could not be used; the session is let in.
func logNotCounted(peer string, err error) {
	fail.Warning("not counted: %s: counting sessions per address: %v; let in", peer, err)
}

// logRefused: a connection over sessionsperaddr.
func logRefused(peer string, n int) {
	fail.Warning("refused: %s: %d sessions from this address already (sessionsperaddr)", peer, n)
}

// logThrottled: a login from an address whose failures are delayed past
// authmaxdelay, refused unchecked.
func logThrottled(peer string, err error) {
	fail.Warning("login refused unchecked: %s: %s", peer, trace.Escape(err.Error()))
}

func logLoggedIn(peer, user string, n int) {
	fail.Info("logged in: %s: %s, %d messages", peer, user, n)
}

func logLoginFailed(peer, user string) {
	fail.Warning("login failed: %s: %s", peer, trace.Escape(user))
}

// logUnreachable: the agent, the pending queue or the policy could not be
// used; the client is told to try again later.
func logUnreachable(peer string, err error) {
	fail.Warning("mail unreachable: %s: %s", peer, trace.Escape(err.Error()))
}

// logNoSize: a store did not say a message's size at login; the message
// is left for a later session.
func logNoSize(peer, user, id string, err error) {
	fail.Warning("size unknown: %s: %s: %s: %s (left for later)", peer, user, id, trace.Escape(err.Error()))
}

// logNotSilenced: a deleted message that its store did not silence; it
// stays in the maildrop.
func logNotSilenced(peer, user, id string, err error) {
	fail.Warning("not silenced: %s: %s: %s: %s (kept)", peer, user, id, trace.Escape(err.Error()))
}

func logQuit(peer, user string, silenced int) {
	fail.Info("quit: %s: %s, %d messages silenced", peer, user, silenced)
}

// logPolicy: the sender policy held, released or dropped an entry; prefix
// is the session's "peer: user: ", what the decision (sender escaped).
func logPolicy(prefix, what string) {
	fail.Info("policy: %s%s", prefix, trace.Escape(what))
}
