package main

import (
	"errors"
	"os"
	"time"

	"im2000/lib/fail"
	"im2000/lib/trace"
)

// The lines a run of im2000-fetch and its -loop log (im2000-log(5)), one
// function per kind of event: the format of each lives here, the LOGS
// section of im2000-fetch(1) lists them (tests/logs_test.go holds it to
// that), and no other file of fetch logs. What speaks to a user at the
// command line is not a log line and stays as it is: usage errors
// (fail.Usage) and the --summary listing (standard output). Words of a
// notification, a store or an error are escaped (lib/trace): they are
// the peers' own.

// errIncomplete ends a run that kept messages for the next (exit 111).
var errIncomplete = fail.Temp(errors.New("not everything could be fetched; run again later"))

// logEnd ends the run: exit 0, or a line saying why not with 100 or 111.
// A run that kept messages for later is a warning, the others (a
// setting, the agent refusing the password, the Maildir's lock) fatal:
// the line says what to mend.
func logEnd(err error) {
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, errIncomplete):
		logIncomplete()
		os.Exit(fail.Temporary)
	}
	logFatal(err)
}

// logFatal: the run, or the loop, cannot go on; err carries the exit
// code.
func logFatal(err error) { fail.Fatal(err) }

func logIncomplete() {
	fail.Warning("incomplete: not everything could be fetched; run again later")
}

// logAgentUnreachable: the agent could not be asked for new
// notifications; the run goes on with those taken before.
func logAgentUnreachable(err error, kept int) {
	fail.Warning("agent unreachable: %s (going on with the %d notifications kept from before)", trace.Escape(err.Error()), kept)
}

// logFetched: one line per run, its counts.
func logFetched(delivered, kept, dropped, gone int) {
	fail.Info("fetched: %d delivered, %d kept for later, %d dropped, %d gone from their stores", delivered, kept, dropped, gone)
}

// logKept: a message that could not be fetched, delivered or silenced
// now; the next run tries again.
func logKept(id, sender, store string, err error) {
	fail.Warning("kept: %s from %s at %s: %s (kept for the next run)", id, trace.Escape(sender), store, trace.Escape(err.Error()))
}

// logGone: a message its store no longer has (expired, or silenced by
// another reader); its notification is done.
func logGone(id, sender string, err error) {
	fail.Warning("gone: %s from %s: %s", id, trace.Escape(sender), trace.Escape(err.Error()))
}

// logNotPruned: the record of delivered messages could not be pruned;
// the next run does it.
func logNotPruned(err error) {
	fail.Warning("record not pruned: %s (the next run prunes it)", trace.Escape(err.Error()))
}

// logAccepted: --accept added an allow line to the policy.
func logAccepted(who, path string) {
	fail.Info("accepted: %s: added \"allow %s\" to %s", trace.Escape(who), trace.Escape(who), path)
}

// logPolicy: the sender policy held, released, accepted or dropped an
// entry; what says which, with the sender and the policy's line.
func logPolicy(what string) {
	fail.Info("policy: %s", trace.Escape(what))
}

func logLoopStarted(interval time.Duration) {
	fail.Info("loop started: every %v, and on SIGHUP or SIGALRM", interval)
}

// logRunFailed: a run of the loop that ended in an error (it said why).
func logRunFailed(err error, interval time.Duration) {
	fail.Warning("run failed: %v; trying again in %v", err, interval)
}

// logRunFailedPerm: a run that ended with exit 100: something to fix.
func logRunFailedPerm(interval time.Duration) {
	fail.Warning("run failed: for good (exit 100): fix what it said; trying again in %v", interval)
}

func logLoopWoken(sig os.Signal) {
	fail.Info("loop woken: %v", sig)
}

func logLoopStopped(sig os.Signal) {
	fail.Info("loop stopped: %v", sig)
}
