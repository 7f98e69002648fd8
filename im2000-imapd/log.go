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

// The lines imapd logs (im2000-log(5)), one function per kind of event:
// the format of each lives here, the LOGS section of im2000-imapd(8)
// lists them (tests/logs_test.go holds it to that), and no other file of
// imapd logs. A peer is addr:port; what a client or a store chose (a user
// name, a mailbox name, an error's text) is quoted or escaped (lib/trace).

// logFatal: imapd cannot start (its settings, its certificate, its
// listener, stdin); err carries the exit code.
func logFatal(err error) { fail.Fatal(err) }

// logSettings: the settings in force, at start (listener mode) and after
// each SIGHUP that loaded; the names are the table's for imapd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("imapd", conf.EveryServer, conf.EveryProgram)))
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

func logStopping(sig os.Signal) {
	fail.Info("shutting down: %v", sig)
}

func logListening(a net.Addr, tls bool, conns int) {
	fail.Info("listening: %v%s, at most %d IMAP sessions", a, map[bool]string{true: " (TLS)"}[tls], conns)
}

// logAcceptFailed: the listener's accept failed (EMFILE and the like);
// tried again after a pause.
func logAcceptFailed(err error) {
	fail.Warning("accept failed: %v; trying again", err)
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

// logLibraryPanic: the IMAP library recovered a panic in a handler (a
// bug: the session ends, the server goes on).
func logLibraryPanic(msg string) {
	fail.Alert("panic in the IMAP session with %s", trace.Escape(msg))
}

// logLibrary: the IMAP library's own lines (a failed command read: a
// client that went away, or a deadline).
func logLibrary(peer, msg string) {
	fail.Warning("IMAP: %s: %s", peer, trace.Escape(msg))
}

// logNotCounted: the slot files could not be used; the session is let in.
func logNotCounted(peer string, err error) {
	fail.Warning("not counted: %s: counting sessions per address: %v; let in", peer, err)
}

// logRefused: a connection over sessionsperaddr.
func logRefused(peer string, n int) {
	fail.Warning("refused: %s: %d sessions from this address already (sessionsperaddr)", peer, n)
}

// logLimit: a session closed by its lifetime or its time to log in.
func logLimit(peer any, why string) {
	fail.Warning("limit: %v: %s, closed", peer, why)
}

// logThrottled: a login from an address whose failures are delayed past
// authmaxdelay, refused unchecked.
func logThrottled(peer string, err error) {
	fail.Warning("login refused unchecked: %s: %s", peer, trace.Escape(err.Error()))
}

func logLoginFailed(peer, user string) {
	fail.Warning("login failed: %s: %s", peer, trace.Escape(user))
}

// logUnreachable: the agent, the pending queue, the policy or the state
// could not be used; the client is told to try again later.
func logUnreachable(peer string, err error) {
	fail.Warning("mail unreachable: %s: %s", peer, trace.Escape(err.Error()))
}

func logLoggedIn(peer, user string, n int) {
	fail.Info("logged in: %s: %s, %d messages", peer, user, n)
}

func logLoggedOut(peer, user string) {
	fail.Info("logged out: %s: %s", peer, user)
}

// logNotTaken: the agent did not answer a poll; tried at the next.
func logNotTaken(peer, user string, err error) {
	fail.Warning("notifications not taken: %s: %s: %s (later)", peer, user, trace.Escape(err.Error()))
}

// logNoSize: a store did not say a message's size; the message is left
// for a later poll.
func logNoSize(peer, user, id string, err error) {
	fail.Warning("size unknown: %s: %s: %s: %s (left for later)", peer, user, id, trace.Escape(err.Error()))
}

// logGone: a message gone from its store, or dropped by the reader; it
// leaves the mailbox.
func logGone(peer, user, name string, err error) {
	fail.Warning("gone: %s: %s: %s: %s (expunged)", peer, user, trace.Escape(name), trace.Escape(err.Error()))
}

// logRetrieveFailed: a store that cannot serve now; the message stays.
func logRetrieveFailed(peer, user, id string, err error) {
	fail.Warning("retrieval failed: %s: %s: %s: %s (kept)", peer, user, id, trace.Escape(err.Error()))
}

// logStateFailed: the mailbox's state file could not be read or written
// (a message's size, the records of messages gone, a poll); the session
// goes on with what it has.
func logStateFailed(peer, user string, err error) {
	fail.Warning("state not updated: %s: %s: %s", peer, user, trace.Escape(err.Error()))
}

// logStateRestarted: a state file that does not parse, begun again.
func logStateRestarted(err error) {
	fail.Warning("state restarted: %s: starting a new UIDVALIDITY (clients fetch the mailbox again)", trace.Escape(err.Error()))
}

// logValidityChanged: another session began the state again; this one
// ends with BYE.
func logValidityChanged(peer, user string, from, to uint32) {
	fail.Warning("UIDVALIDITY changed: %s: %s: from %d to %d (the state began again): session ended", peer, user, from, to)
}

// logNotSilenced: a deleted message that its store did not silence; it
// stays in the maildrop.
func logNotSilenced(peer, user, id string, err error) {
	fail.Warning("not silenced: %s: %s: %s: %s (kept)", peer, user, id, trace.Escape(err.Error()))
}

func logExpunged(peer, user string, silenced, kept int) {
	fail.Info("expunged: %s: %s, %d messages silenced, %d kept", peer, user, silenced, kept)
}

// logMoved: messages moved out of INBOX, which deletes them.
func logMoved(peer, user, dest string, silenced, kept int) {
	fail.Info("moved: %s: %s: to %s, i.e. deleted: %d messages silenced, %d kept", peer, user, trace.Escape(dest), silenced, kept)
}

// logPolicy: the sender policy held, released or dropped an entry; prefix
// is the session's "peer: user: ", what the decision (sender escaped).
func logPolicy(prefix, what string) {
	fail.Info("policy: %s%s", prefix, trace.Escape(what))
}
