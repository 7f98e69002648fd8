package main

import (
	"os"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
)

// The lines listd logs (im2000-log(5)), one function per kind of event:
// the format of each lives here, the LOGS section of im2000-listd(8)
// lists them (tests/logs_test.go holds it to that), and no other file of
// listd logs (but for fail.Recover's alert).

// logFatal: listd cannot start (its settings, its state directory).
func logFatal(err error) { fail.Fatal(fail.Temp(err)) }

// logSettings: the settings in force, at start and after each SIGHUP;
// the names are the table's for listd (lib/conf).
func logSettings(d conf.Dir) {
	fail.Info("settings: %s", d.InForce(conf.ReadBy("listd", conf.EveryClient, conf.EveryProgram)))
}

func logFollowing(reader addr.Mailbox, interval time.Duration) {
	fail.Info("following: %s, every %v", reader, interval)
}

func logStopping(sig os.Signal) {
	fail.Info("stopping: %v", sig)
}

// logReloadFailed: a SIGHUP whose settings do not load.
func logReloadFailed(err error) {
	fail.Warning("SIGHUP: %v; going on with the settings in force", err)
}

// logChangedList: a SIGHUP found a setting of many lines changed.
func logChangedList(name string, is, was int) {
	fail.Info("SIGHUP: %s changed (%d lines, were %d)", name, is, was)
}

// logChanged: a SIGHUP found a setting of one value changed; was and is
// are quoted (shown).
func logChanged(name, was, is string) {
	fail.Info("SIGHUP: %s: %s -> %s", name, was, is)
}

func logUnchanged() {
	fail.Info("SIGHUP: settings unchanged")
}

// logBadLine: a line of the list file that is not "list store
// [backfill]"; skipped, the others are followed.
func logBadLine(path, line string) {
	fail.Warning("listfile line skipped: %s: %q: want \"list store [backfill]\"", path, line)
}

// logNoListfile: the list file cannot be read; nothing is scanned until
// the next pass.
func logNoListfile(err error) {
	fail.Warning("listfile unreadable: %v (trying again next time)", err)
}

// logScanFailed: the scan of one list failed (its store, the agent, the
// state directory); it is tried again at the next pass.
func logScanFailed(list, where string, err error) {
	fail.Warning("scan failed: %s at %s: %v (trying again next time)", list, where, err)
}

// logPosts: a scan found posts and the agent took their notifications.
func logPosts(list, where string, n int, reader addr.Mailbox) {
	fail.Info("posts: %s at %s: %d new posts for %s", list, where, n, reader)
}
