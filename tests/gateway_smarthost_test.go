package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmarthost: alice writes to carol at a domain that exists but
// publishes no IM2000 service (nsd serves it without SRV records).
// notifyd hands the message to the smarthost: first down (carol's status
// is temporary, noserver), then a real postfix on its port, which delivers
// into carol's Maildir; the status says smtp, and the hand-off happened
// exactly once, however often notifyd's schedule came round.
func TestSmarthost(t *testing.T) {
	dns := startGatewayNSD(t, map[string]string{"carol.test": "@ IN A 127.0.0.1\n"})
	relay := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", dns)
		e.setConf("smarthost", relay)
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "2")
		e.setConf("resend", "2")
		e.setConf("timeout", "3")
	})
	h.setConf("storelocation", h.msrap)
	_, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifyd:\n%s", nlog.String())
		}
	})
	id := h.inject("From: alice@example.org\nTo: carol@carol.test\nSubject: over SMTP\n\nhello carol\n", "carol@carol.test")
	state := func() string { return recipientStates(t, h.store, "alice", id)["carol@carol.test"] }
	await(t, 30*time.Second, "carol noserver while the smarthost is down", func() bool { return state() == "noserver/unread" })

	uid := postfixUID(t)
	pf := startPostfixAt(t, relay, fmt.Sprintf(`virtual_mailbox_domains = carol.test
virtual_mailbox_base = @DIR@/vmail
virtual_mailbox_maps = texthash:@DIR@/etc/vmailbox
virtual_uid_maps = static:%d
virtual_gid_maps = static:%d`, uid, uid), "", map[string]string{"vmailbox": "carol@carol.test carol/Maildir/\n"})
	await(t, 60*time.Second, "carol handed to SMTP", func() bool { return state() == "smtp/unread" })
	maildir := filepath.Join(pf.dir, "vmail", "carol", "Maildir")
	await(t, 30*time.Second, "carol's Maildir has the message", func() bool { return len(maildirMessages(t, maildir)) == 1 })
	time.Sleep(6 * time.Second) // three resend periods: nothing more may come
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: over SMTP") || !strings.Contains(msgs[0], "hello carol") {
		t.Fatalf("carol's Maildir: %d messages: %q", len(msgs), msgs)
	}
	if state() != "smtp/unread" {
		t.Fatalf("carol's state %s after the hand-off", state())
	}
	b, _ := os.ReadFile(pf.log)
	if n := strings.Count(string(b), "to=<carol@carol.test>"); n != 1 {
		t.Errorf("postfix delivered to carol %d times, want once:\n%s", n, b)
	}
	if r := h.run("", "im2000-status"); !strings.Contains(r.stdout, "smtp") {
		t.Errorf("im2000-status does not show the hand-off:\n%s", r.stdout)
	}
	// The record keeps the state alone; the relay shown is the smarthost
	// setting in force.
	if r := h.run("", "im2000-status", id); !strings.Contains(r.stdout, "carol@carol.test\thanded to SMTP via "+relay+"\t") {
		t.Errorf("im2000-status %s does not say where carol's copy went:\n%s%s", id, r.stdout, r.stderr)
	}
	if r := h.run("", "im2000-status", "--json", id); !strings.Contains(r.stdout, `"via": "`+relay+`"`) {
		t.Errorf("im2000-status --json %s has no via:\n%s%s", id, r.stdout, r.stderr)
	}
}
