package inbox

import (
	"fmt"
	"strings"
	"time"

	"im2000/lib/fail"
	"im2000/lib/trace"
	"im2000/lib/wire/rnasp"
)

// The lines lib/inbox logs (im2000-log(5)), one function per kind of
// event, in the log of the program that reads the mail: im2000-fetch,
// im2000-pop3d, im2000-imapd. The format of each lives here; the LOGS
// section of each of those pages and im2000-log(5)'s "Lines of the mail
// readers" list them (tests/logs_test.go holds them to that), and no
// other file of lib/inbox logs. prefix is the Inbox's LogPrefix (a
// session's "peer: user: ", or nothing for fetch). What a store, a sender
// or an account chose is escaped (lib/trace): a notification is hostile.

// esc is v as text with its control characters escaped.
func esc(v any) string { return trace.Escape(fmt.Sprint(v)) }

// logUnverified: Bound dropped a notification whose sender is not
// verified, unretrieved (its store learns nothing). A warning: a forgery,
// or a genuine sender whose domain's records could not be read (its store
// notifies again).
func logUnverified(prefix string, n *rnasp.Notification, err error) {
	fail.Warning("dropped unverified: %s%s from %s at %s, not retrieved: %s", esc(prefix), n.ID, esc(n.Sender), esc(n.StoreClear), esc(err))
}

// logHeldDropped: Held dropped a held entry unretrieved: held longer than
// maxlifetime, over maxheld, or without its stored sender. A warning: a
// limit reached.
func logHeldDropped(prefix, key string, n *rnasp.Notification, why string) {
	fail.Warning("dropped held: %s%s from %s at %s, not retrieved: %s", esc(prefix), esc(key), esc(n.Sender), esc(n.StoreClear), esc(why))
}

// logRefused: a store broke a retrieval's bounds (a size over databytes or
// not the notified one, a page out of place); the entry is dropped.
func logRefused(prefix string, n *rnasp.Notification, size uint64, notified string, limit uint64, err error) {
	fail.Warning("refused retrieval: %s%s from %s at %s: store's size %d, notified size %s, limit %d: %s; dropped (a re-sent notification is a new attempt)",
		esc(prefix), n.ID, esc(n.Sender), esc(n.StoreClear), size, notified, limit, esc(err))
}

// logExpired: an entry that kept failing longer than maxlifetime is
// dropped.
func logExpired(prefix string, n *rnasp.Notification, date time.Time, life time.Duration, err error) {
	fail.Warning("expired: %s%s from %s at %s: notified %s, failing longer than maxlifetime (%d seconds): %s; dropped",
		esc(prefix), n.ID, esc(n.Sender), esc(n.StoreClear), date.UTC().Format(time.RFC3339), int64(life/time.Second), esc(err))
}

// logGatewaysUnread: the setting gateways cannot be read; no gateway's
// envelope sender is trusted (its messages still arrive).
func logGatewaysUnread(err error) {
	fail.Warning("gateways: %s; no gateway trusted", esc(err))
}

// logGatewayNotAddress: a line of gateways that is not an address.
func logGatewayNotAddress(file, line string) {
	fail.Warning("gateways: %s: %q is not an address; not trusted as a gateway", esc(file), line)
}

// logPanic: a retrieval panicked (a bug); stopped there, its entry and
// the rest of its store's are left for later.
func logPanic(n *rnasp.Notification, key string, v any) {
	const what = "the retrieval of "
	line := fail.Panicked(what+n.ID.String()+" ("+key+")", v)
	fail.Alert("panic in the retrieval of %s", esc(strings.TrimPrefix(line, "panic in "+what)))
}
