package main

import (
	"strings"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/store"
	"im2000/lib/wire"
)

// The lines notifyd logs (im2000-log(5)), one function per kind of event:
// the format of each lives here, the LOGS section of im2000-notifyd(8)
// lists them (tests/logs_test.go holds it to that), and no other file of
// notifyd logs.

// logFatal: notifyd cannot start (its settings, its store, its FIFO).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start and after each SIGHUP
// that loaded; the names are the table's for notifyd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("notifyd", conf.EveryClient, conf.EveryProgram)))
}

func logRunning(root string, location wire.ServiceLocation) {
	fail.Info("running: store %s, store location %v", root, location)
}

// logStopped: SIGTERM or SIGINT, and every batch in flight recorded.
func logStopped() {
	fail.Info("stopped: every batch in flight recorded")
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logChanged: a SIGHUP found the file of a setting changed.
func logChanged(name string) {
	fail.Info("SIGHUP: %s changed", name)
}

func logUnchanged() {
	fail.Info("SIGHUP: settings unchanged")
}

// logExpedited: SIGALRM made the deferred recipients due.
func logExpedited(n int) {
	fail.Info("SIGALRM: %d deferred recipients due now", n)
}

// logAttempt: one line per recipient per attempt; agent is the agent's
// address, or the domain when none was reached.
func logAttempt(id msgid.ID, rcpt addr.Mailbox, agent string, out outcome) {
	fail.Info("attempt: %s %s %s %s", id, rcpt, agent, out)
}

// logExpired: a queued message's lifetime ended; it leaves the queue.
func logExpired(account string, id msgid.ID) {
	fail.Info("expired: %s/%s: lifetime over, no more notifications", account, id)
}

// logAccountsUnreadable: the store's list of archives cannot be read; the
// next scan tries again.
func logAccountsUnreadable(err error) {
	fail.Warning("store unreadable: listing accounts: %v", err)
}

// logArchiveUnreadable: an archive's todo/ or queue/ cannot be read; the
// next scan tries again.
func logArchiveUnreadable(account string, err error) {
	fail.Warning("archive unreadable: %s: %v (tried again at the next scan)", account, err)
}

// logNotQueued: a new message could not be moved from todo/ to queue/, or
// queue/ not synced; it is notified all the same, and a restart finds it.
func logNotQueued(account string, err error) {
	fail.Warning("not queued: %s: %v", account, err)
}

// logUnreadable: a queued message or its sidecar cannot be read, or they
// do not match; it stays queued and is tried again, backing off.
func logUnreadable(account string, id msgid.ID, err error) {
	fail.Warning("message unreadable: %s/%s: %v (tried again later)", account, id, err)
}

// logNotRecorded: outcomes could not be written (a full disk, a broken
// sidecar); the recipients are tried again, backing off.
func logNotRecorded(account string, id msgid.ID, err error) {
	fail.Warning("not recorded: %s/%s: %v (tried again later)", account, id, err)
}

// logNotDequeued: a finished message's queue link could not be removed;
// the next start finds it finished and removes it.
func logNotDequeued(account string, id msgid.ID, err error) {
	fail.Warning("not dequeued: %s/%s: %v (removed at the next start)", account, id, err)
}

// logUnreachable: no agent of domain could be reached (or DNS failed).
func logUnreachable(domain string, err error) {
	fail.Warning("unreachable: %s: %v", domain, err)
}

// logTLSRefused: the agent was refused as tlsdowngrade or tlsbadcert.
func logTLSRefused(domain string, err error) {
	fail.Warning("TLS refused: %s: %v", domain, err)
}

// logNotifyFailed: the agent reached timed out, or answered with an error
// or something that does not parse.
func logNotifyFailed(domain, agent string, err error) {
	fail.Warning("notify failed: %s (%s): %v", domain, agent, err)
}

// logBadResults: the agent answered a count of results other than the
// batch's (protocolerror).
func logBadResults(domain, agent string, got, want int) {
	fail.Warning("bad answer: %s (%s): %d results for %d notifications", domain, agent, got, want)
}

// logSmarthostFailed: a hand-off to the smarthost failed; what is the
// step and the relay's answer, escaped (trace.Escape) when it came from
// the relay.
func logSmarthostFailed(where, what string) {
	fail.Warning("smarthost failed: %s: %s", where, what)
}

// logHandedOff: the smarthost answered the final dot with 250; the
// recipients it took are recorded smtp, with its reply (escaped), which
// normally names its queue identifier.
func logHandedOff(where, reply string) {
	fail.Info("handed off: %s: %s", where, reply)
}

// logSmarthostPutBack: a session with the smarthost failed; the batch's
// other messages to the domain are not tried now, but on the queue's
// schedule, so that a tarpit costs one timeout per batch.
func logSmarthostPutBack(domain, relay string, n int, st store.Notification) {
	fail.Warning("smarthost put back: %d messages to %s not tried: the session with %s failed (%s, tried again on the queue's schedule)", n, domain, relay, st)
}

// logTLSNotRemembered: the smarthost was reached over TLS, but the
// tlsseen directory cannot record it, so a later downgrade would go
// unnoticed. (lib/locate logs the same event for agents.)
func logTLSNotRemembered(host string, err error) {
	fail.Warning("cannot remember TLS: the smarthost %s reached over TLS, not recorded (check the tlsseen directory): %v", host, err)
}

func logReaped(expired, reclaimed, finished int) {
	fail.Info("reaped: %d expired, %d reclaimed, %d interrupted removals finished", expired, reclaimed, finished)
}

// logReapFailed: a removal failed; the message stays, marked, and the
// next run tries again.
func logReapFailed(err error) {
	fail.Warning("reap failed: %v", err)
}

// logReapDefaults: reapinterval or reclaim cannot be read at start.
func logReapDefaults(err error, every int64) {
	fail.Warning("reap settings: %v; reaping every %d s, reclaiming nothing early", err, every)
}

// logReapKept: reapinterval or reclaim cannot be read before a run.
func logReapKept(err error) {
	fail.Warning("reap settings: %v; going on with the settings in force", err)
}

// logCleanFailed: the hourly clean of crashed writers' debris failed.
func logCleanFailed(err error) {
	fail.Warning("clean failed: %v (again in an hour)", err)
}

// logPanic: a panic stopped at a destination's or a message's boundary.
func logPanic(what string, p any) {
	fail.Alert("panic in %s", strings.TrimPrefix(fail.Panicked(what, p), "panic in "))
}
