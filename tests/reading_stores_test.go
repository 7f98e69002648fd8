package tests

import (
	"bufio"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// Bounded reading, the stores' side (see reading_test.go): one chance per
// store with stores worked at once, a closed session reopened, an entry
// failing past maxlifetime dropped.

// silentStore is a store that accepts sessions and never answers.
func silentStore(t *testing.T) *hostile.Server {
	return hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Silent: true} }
	})
}

// TestTarpitStores: three stores that never answer, two notifications at
// each, and alice's real message: fetch delivers the real one and ends in
// about one session timeout (each store has one chance, and the stores are
// worked at once); a POP3 login costs about one timeout too.
func TestTarpitStores(t *testing.T) {
	const timeout = 3 * time.Second
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	pits := []*hostile.Server{silentStore(t), silentStore(t), silentStore(t)}
	stores := []string{h.msrap}
	for _, p := range pits {
		stores = append(stores, p.Addr)
	}
	e := readerEnv(t, bobAgent.rnaqp, stores...)
	e.setConf("timeout", strconv.Itoa(int(timeout/time.Second)))
	maildir := filepath.Join(t.TempDir(), "Maildir")
	pitNotes := func(base byte) {
		for i, p := range pits {
			for k := range 2 {
				notifyAnon(t, bobAgent.rnasp, "alice@example.org", literal(p.Addr), base+byte(2*i+k))
			}
		}
	}

	pitNotes(0)
	id := h.inject("From: alice@example.org\nSubject: real\n\nthe-real-one\n", "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	start := time.Now()
	r := e.run("", "im2000-fetch", "-d", maildir)
	took := time.Since(start)
	t.Logf("fetch took %v (timeout %v): exit %d: %s", took, timeout, r.code, r.stderr)
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "the-real-one") {
		t.Errorf("the real message is not delivered: %d messages", len(msgs))
	}
	if took > 5*timeout/2 {
		t.Errorf("fetch took %v with three tarpits, over 2.5 times the timeout %v", took, timeout)
	}
	if r.code != 111 || !strings.Contains(r.stderr, "1 delivered, 6 kept for later, 0 dropped") ||
		strings.Count(r.stderr, "failed earlier in this run; kept for the next") != 3 {
		t.Errorf("fetch's report: exit %d", r.code)
	}
	for i, p := range pits {
		if n := p.Sessions(); n != 1 {
			t.Errorf("tarpit %d saw %d sessions, want 1 (one chance)", i, n)
		}
	}

	// POP3: the tarpits' notifications have no size, so pop3d asks the
	// stores at login: at once, one chance each.
	popAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, popLog := daemonEnv(t, e.vars, popAddr, filepath.Join(bin, "im2000-pop3d"), "-l", popAddr)
	pitNotes(10) // fetch took the first ones
	id = h.inject("From: alice@example.org\nSubject: real\n\nthe-real-two\n", "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	c, err := net.Dial("tcp", popAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	p := &pop3{t: t, conn: c, r: bufio.NewReader(c)}
	p.line()
	p.cmd("USER bob")
	start = time.Now()
	login := p.cmd("PASS bobpw")
	took = time.Since(start)
	t.Logf("POP3 login took %v: %q", took, login)
	if login != "+OK bob has 1 messages" {
		t.Errorf("POP3 login with tarpits: %q; log:\n%s", login, popLog.String())
	}
	if took > 5*timeout/2 {
		t.Errorf("POP3 login took %v with three tarpits, over 2.5 times the timeout %v", took, timeout)
	}
	if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "the-real-two") {
		t.Errorf("RETR: %q", r)
	}
	p.cmd("QUIT")
}

// TestStoreClosesSessions: a store that closes each session once it has
// nothing more to say (as stores close idle sessions): fetch dials it
// again and the second message at that store arrives in the same run.
func TestStoreClosesSessions(t *testing.T) {
	const msg = "From: alice@example.org\r\nSubject: one of two\r\n\r\nclosing-store\r\n"
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		good := fakeStore(msg)
		return func(cmd wire.Body) hostile.Answer {
			a := good(cmd)
			_, a.Close = cmd.(*msrap.Silence) // the exchange is over: hang up
			return a
		}
	})
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, len(msg)), noteAt(store.Addr, 2, len(msg))))
	e := readerEnv(t, agent.Addr, store.Addr)
	maildir := filepath.Join(t.TempDir(), "Maildir")
	r := e.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 2 || !strings.Contains(r.stderr, "2 delivered, 0 kept for later, 0 dropped") {
		t.Errorf("fetch from a store that closes its sessions: exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	if n := store.Sessions(); n != 2 {
		t.Errorf("the store saw %d sessions, want 2 (one reopened)", n)
	}
}

// TestMaxLifetime: an entry whose store keeps failing is kept while it is
// younger than maxlifetime, and dropped, with a log line, once older.
func TestMaxLifetime(t *testing.T) {
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	down := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	e := readerEnv(t, bobAgent.rnaqp, down)
	e.setConf("maxlifetime", "3")
	maildir := filepath.Join(t.TempDir(), "Maildir")
	notifyAnon(t, bobAgent.rnasp, "alice@example.org", literal(down), 1)
	notified := time.Now()

	r := e.run("", "im2000-fetch", "-d", maildir)
	// The agent dates to the second: the entry is at most a second older
	// than notified.
	if time.Since(notified) < 2*time.Second {
		if r.code != 111 || !strings.Contains(r.stderr, "0 delivered, 1 kept for later, 0 dropped") {
			t.Errorf("a young entry at a store that is down: exit %d: %s", r.code, r.stderr)
		}
	}
	time.Sleep(time.Until(notified.Add(4500 * time.Millisecond)))
	r = e.run("", "im2000-fetch", "-d", maildir)
	want := "im2000-fetch: warning: expired: bb010000000000000000000000000000 from alice@example.org at " + down + ": notified "
	if r.code != 111 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "failing longer than maxlifetime (3 seconds)") ||
		!strings.Contains(r.stderr, "0 delivered, 0 kept for later, 1 dropped") {
		t.Errorf("an entry older than maxlifetime: exit %d, log without %q: %s", r.code, want, r.stderr)
	}
	if r := e.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
		t.Errorf("the expired entry is still pending: %q", r.stdout)
	}
}
