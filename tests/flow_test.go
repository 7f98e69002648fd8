package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
	"im2000/lib/msgid"
	"im2000/lib/store"
)

// recipientStates reads a message's status sidecar as address -> "notification/read".
func recipientStates(t *testing.T, root, account, id string) map[string]string {
	out := map[string]string{}
	for rcpt, r := range recipientStatuses(t, root, account, id) {
		out[rcpt] = r.Notification.String() + "/" + r.Read.String()
	}
	return out
}

// recipientStatuses is each recipient's record in the status of account's
// message id, by address.
func recipientStatuses(t *testing.T, root, account, id string) map[string]store.RecipientStatus {
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Account(account)
	mid, _ := msgid.Parse(id)
	m, err := a.Open(mid)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := a.Status(mid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.RecipientStatus{}
	for i, r := range st.Recipients {
		out[m.Env.Recipients[i].Addr.String()] = r
	}
	return out
}

// await polls cond for up to d.
func await(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
	return 0
}

// fetchEnv is a recipient's own configuration for im2000-fetch.
func fetchEnv(t *testing.T, account string, agent *agentHost) (*env, string) {
	e := newEnv(t, account)
	e.setConf("rna", agent.rnaqp)
	e.setConf("password", account+"pw")
	maildir := filepath.Join(t.TempDir(), "Maildir")
	return e, maildir
}

func maildirMessages(t *testing.T, dir string) []string {
	ents, _ := os.ReadDir(filepath.Join(dir, "new"))
	var out []string
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		out = append(out, string(b))
	}
	return out
}

// TestMailFlows is mail going from one person to another: alice injects to
// bob and carol (and to a user and a domain that do not exist), notifyd
// notifies their agents, bob fetches into his Maildir and the store shows
// it; carol's agent is down at first, comes back, and carol still gets it.
func TestMailFlows(t *testing.T) {
	dns := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{}) // every name: NXDOMAIN
	bobAgent := newAgentHostFor(t, "tcpserver", "example.net", "", "bob")
	carolRNASP := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n_rnasp._tcp.example.com "+carolRNASP+"\n")
		e.setConf("resolvers", dns.Addr)
		e.setConf("retrybase", "3")
		e.setConf("retrymax", "3")
		e.setConf("resend", "3")
	})
	h.setConf("storelocation", h.msrap)
	notifyd, notifydLog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifyd:\n%s", notifydLog.String())
		}
	})
	time.Sleep(300 * time.Millisecond) // let notifyd make the trigger FIFO

	injected := time.Now()
	id := h.inject("From: Alice <alice@example.org>\nSubject: dinner\n\nAt eight?\n", "bob@example.net", "carol@example.com", "dave@example.net", "eve@nosuch.test")
	states := func() map[string]string { return recipientStates(t, h.store, "alice", id) }
	took := await(t, 2*time.Second, "bob notified", func() bool { return states()["bob@example.net"] == "notifying/unread" })
	t.Logf("bob's agent had the notification %v after injection (scan interval 3 s: the trigger did it)", took)
	await(t, 5*time.Second, "permanent and temporary failures", func() bool {
		s := states()
		return s["dave@example.net"] == "nouser/unread" && s["eve@nosuch.test"] == "baddomain/unread" && s["carol@example.com"] == "noserver/unread"
	})
	_ = injected

	// bob fetches.
	be, bobMaildir := fetchEnv(t, "bob", bobAgent)
	be.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n") // binds alice's store to her domain
	if r := be.run("", "im2000-fetch", "-d", bobMaildir); r.code != 0 {
		t.Fatalf("bob's fetch: exit %d: %s", r.code, r.stderr)
	}
	msgs := maildirMessages(t, bobMaildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: dinner\n") || !strings.Contains(msgs[0], "\n\nAt eight?\n") {
		t.Fatalf("bob's Maildir: %q", msgs)
	}
	if s := states()["bob@example.net"]; s != "silenced/readall" {
		t.Fatalf("bob after fetching: %s", s)
	}
	r := h.run("", "im2000-status", id)
	if !strings.Contains(r.stdout, "bob@example.net\tsilenced\treadall") || !strings.Contains(r.stdout, "dave@example.net\tnouser") || !strings.Contains(r.stdout, "eve@nosuch.test\tbaddomain") {
		t.Fatalf("alice's status: %q", r.stdout)
	}

	// carol's agent comes up where the route points; notifyd retries.
	carolAgent := newAgentHostFor(t, "listener", "example.com", carolRNASP, "carol")
	await(t, 10*time.Second, "carol notified once her agent is back", func() bool { return states()["carol@example.com"] == "notifying/unread" })
	r = h.run("", "im2000-status", id)
	if !strings.Contains(r.stdout, "carol@example.com\tnotifying\tunread") {
		t.Fatalf("alice's status with carol notified: %q", r.stdout)
	}
	ce, carolMaildir := fetchEnv(t, "carol", carolAgent)
	ce.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n")
	if r := ce.run("", "im2000-fetch", "-d", carolMaildir, "--summary"); r.code != 0 || !strings.Contains(r.stdout, "alice@example.org") {
		t.Fatalf("carol's summary: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if len(maildirMessages(t, carolMaildir)) != 0 {
		t.Fatal("--summary delivered something")
	}
	if r := ce.run("", "im2000-fetch", "-d", carolMaildir); r.code != 0 {
		t.Fatalf("carol's fetch: exit %d: %s", r.code, r.stderr)
	}
	if msgs := maildirMessages(t, carolMaildir); len(msgs) != 1 || !strings.Contains(msgs[0], "At eight?") {
		t.Fatalf("carol's Maildir: %q", msgs)
	}
	if s := states()["carol@example.com"]; s != "silenced/readall" {
		t.Fatalf("carol after fetching: %s", s)
	}
	// Everyone is final: the message leaves the queue; nothing more arrives.
	s, _ := store.Open(h.store)
	a, _ := s.Account("alice")
	await(t, 10*time.Second, "message done", func() bool { todo, _ := a.Todo(); return len(todo) == 0 })
	if r := be.run("", "im2000-fetch", "-d", bobMaildir); r.code != 0 || len(maildirMessages(t, bobMaildir)) != 1 {
		t.Fatalf("a second fetch: exit %d, %d messages", r.code, len(maildirMessages(t, bobMaildir)))
	}

	// --stdout: an mbox on standard output, nothing in the Maildir.
	id2 := h.inject("Subject: second\n\nFrom the start of a line.\n", "bob@example.net")
	await(t, 2*time.Second, "bob notified again", func() bool {
		return recipientStates(t, h.store, "alice", id2)["bob@example.net"] == "notifying/unread"
	})
	r = be.run("", "im2000-fetch", "-d", bobMaildir, "--stdout")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "From alice@") || !strings.Contains(r.stdout, "\n>From the start of a line.\n") {
		t.Fatalf("--stdout: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if len(maildirMessages(t, bobMaildir)) != 1 {
		t.Fatal("--stdout also delivered into the Maildir")
	}

	// A delivery that fails after the retrieval leaves the message for the
	// next run, although the agent has already cleared its notification.
	id3 := h.inject("Subject: third\n\nagain\n", "bob@example.net")
	await(t, 2*time.Second, "bob notified a third time", func() bool {
		return recipientStates(t, h.store, "alice", id3)["bob@example.net"] == "notifying/unread"
	})
	broken := filepath.Join(t.TempDir(), "Maildir")
	os.MkdirAll(broken, 0o700)
	os.WriteFile(filepath.Join(broken, "new"), []byte("not a directory"), 0o600)
	if r := be.run("", "im2000-fetch", "-d", broken); r.code != 111 {
		t.Fatalf("delivery into a broken Maildir: exit %d, %s", r.code, r.stderr)
	}
	// (The Maildir is made ready before the message is streamed into its
	// tmp/, so the store may not even have seen a retrieval: unread.)
	if s := recipientStates(t, h.store, "alice", id3)["bob@example.net"]; !strings.HasPrefix(s, "notifying/") {
		t.Fatalf("after a failed delivery the message is %s; it must not be silenced", s)
	}
	os.Remove(filepath.Join(broken, "new"))
	if r := be.run("", "im2000-fetch", "-d", broken); r.code != 0 || len(maildirMessages(t, broken)) != 1 {
		t.Fatalf("the next run: exit %d, %d messages, %s", r.code, len(maildirMessages(t, broken)), r.stderr)
	}
	if s := recipientStates(t, h.store, "alice", id3)["bob@example.net"]; s != "silenced/readall" {
		t.Fatalf("after the next run: %s", s)
	}

	// SIGTERM: notifyd finishes its pass and exits 0.
	notifyd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- notifyd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("notifyd after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("notifyd did not stop on SIGTERM")
	}
}
