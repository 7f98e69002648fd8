package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// summaryLine is one line of im2000-fetch --summary.
type summaryLine struct {
	date, sender, size, where, verified, state, key string
}

func parseSummary(t *testing.T, out string) []summaryLine {
	t.Helper()
	var lines []summaryLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		f := strings.Split(l, "\t")
		if len(f) != 7 {
			t.Fatalf("--summary line with %d fields, want 7: %q", len(f), l)
		}
		lines = append(lines, summaryLine{f[0], f[1], f[2], f[3], f[4], f[5], f[6]})
	}
	return lines
}

func findSummary(lines []summaryLine, sender string) (summaryLine, bool) {
	for _, l := range lines {
		if l.sender == sender {
			return l, true
		}
	}
	return summaryLine{}, false
}

// TestSenderPolicyFetch: with "default hold" and a deny, im2000-fetch
// contacts the store of neither a held nor a denied sender; --summary lists
// the held ones from their notifications alone; --accept KEY fetches one
// real message of alice's, --accept ADDRESS fetches the next and allows
// alice for good, --accept KEY of a stranger's reaches the stranger's
// store only then, and the denied sender's store is never contacted.
func TestSenderPolicyFetch(t *testing.T) {
	stranger := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: stranger@unknown.example\r\nSubject: hello\r\n\r\nstranger-body\r\n")
	})
	spammer := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: spam\r\n\r\nspam\r\n") })
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))

	// Every sender here is verified: the routes bind each domain to its store.
	be, maildir := fetchEnv(t, "bob", bobAgent)
	be.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n_msrap._tcp.unknown.example "+stranger.Addr+
		"\n_msrap._tcp.spam.example "+spammer.Addr+"\n")
	policyFile := filepath.Join(be.conf, "senderpolicy")
	be.setConf("senderpolicy", "# bob's\ndefault hold\ndeny @spam.example")

	fetch := func(what string, args ...string) result {
		t.Helper()
		r := be.run("", "im2000-fetch", append([]string{"-d", maildir}, args...)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
		return r
	}
	summary := func() []summaryLine {
		t.Helper()
		return parseSummary(t, fetch("--summary", "--summary").stdout)
	}
	notify := func(sender, where string, id byte) {
		t.Helper()
		if r := notifyAnon(t, bobAgent.rnasp, sender, literal(where), id); r != rnasp.Accepted {
			t.Fatalf("the agent answered %d to %s", r, sender)
		}
	}
	awaitNotified := func(id string) {
		t.Helper()
		await(t, 5*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	}

	notify("stranger@unknown.example", stranger.Addr, 1)
	notify("x@spam.example", spammer.Addr, 2)
	id1 := h.inject("From: alice@example.org\nSubject: one\n\nalice-one\n", "bob@example.net")
	awaitNotified(id1)
	r := fetch("a run with default hold")
	if n := len(maildirMessages(t, maildir)); n != 0 || stranger.Sessions() != 0 || spammer.Sessions() != 0 {
		t.Fatalf("held and denied: %d messages, the stranger's store saw %d sessions, the spammer's %d", n, stranger.Sessions(), spammer.Sessions())
	}
	if s := recipientStates(t, h.store, "alice", id1)["bob@example.net"]; s != "notifying/unread" {
		t.Errorf("alice's held message at her store: %s, want it untouched", s)
	}
	for _, want := range []string{"held ", " from stranger@unknown.example at " + stranger.Addr + ", not retrieved (" + policyFile + " line 2): im2000-fetch --accept ",
		" from alice@example.org at ", "from x@spam.example at " + spammer.Addr + ", not retrieved: denied by " + policyFile + " line 3"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the log does not say %q:\n%s", want, r.stderr)
		}
	}

	// --summary: the two held ones, from their notifications alone.
	lines := summary()
	alice, ok1 := findSummary(lines, "alice@example.org")
	str, ok2 := findSummary(lines, "stranger@unknown.example")
	if len(lines) != 2 || !ok1 || !ok2 {
		t.Fatalf("--summary: %+v", lines)
	}
	for _, l := range lines {
		if _, err := time.Parse(time.RFC3339, l.date); err != nil || l.verified != "verified" || l.state != "held" || len(l.key) != 32 || l.size == "" {
			t.Errorf("--summary line %+v", l)
		}
	}
	if str.where != stranger.Addr || stranger.Sessions() != 0 {
		t.Errorf("--summary: %+v; the stranger's store saw %d sessions", str, stranger.Sessions())
	}

	// Held stays held, run after run; the stores learn nothing.
	fetch("a second run")
	if stranger.Sessions() != 0 || len(maildirMessages(t, maildir)) != 0 || len(summary()) != 2 {
		t.Fatalf("a second run: the stranger's store saw %d sessions, %d messages", stranger.Sessions(), len(maildirMessages(t, maildir)))
	}

	// --accept KEY: alice's message, delivered in the same run, silenced;
	// the policy is unchanged.
	fetch("--accept alice's key", "--accept", alice.key)
	if msgs := maildirMessages(t, maildir); len(msgs) != 1 || !strings.Contains(msgs[0], "alice-one") || !strings.HasPrefix(msgs[0], "Return-Path: <alice@example.org>\n") {
		t.Fatalf("after --accept %s: %q", alice.key, msgs)
	}
	if s := recipientStates(t, h.store, "alice", id1)["bob@example.net"]; s != "silenced/readall" {
		t.Errorf("alice's accepted message at her store: %s", s)
	}
	if b, _ := os.ReadFile(policyFile); string(b) != "# bob's\ndefault hold\ndeny @spam.example\n" {
		t.Errorf("--accept KEY changed the policy: %q", b)
	}
	if stranger.Sessions() != 0 {
		t.Errorf("--accept of alice's reached the stranger's store")
	}

	// Her next message is held again; --accept ADDRESS fetches it and allows her.
	id2 := h.inject("From: alice@example.org\nSubject: two\n\nalice-two\n", "bob@example.net")
	awaitNotified(id2)
	fetch("alice's second message")
	if len(maildirMessages(t, maildir)) != 1 {
		t.Fatal("alice's second message was not held")
	}
	r = fetch("--accept alice", "--accept", "alice@example.org")
	if msgs := maildirMessages(t, maildir); len(msgs) != 2 || !strings.Contains(strings.Join(msgs, ""), "alice-two") {
		t.Fatalf("after --accept alice@example.org: %q\n%s", msgs, r.stderr)
	}
	if b, _ := os.ReadFile(policyFile); string(b) != "# bob's\ndefault hold\ndeny @spam.example\nallow alice@example.org\n" {
		t.Errorf("--accept ADDRESS: the policy is %q", b)
	}
	id3 := h.inject("From: alice@example.org\nSubject: three\n\nalice-three\n", "bob@example.net")
	awaitNotified(id3)
	fetch("alice's third message, allowed")
	if len(maildirMessages(t, maildir)) != 3 {
		t.Fatal("alice's third message, now allowed, was not fetched")
	}

	// The stranger's store learns of bob only on --accept.
	fetch("--accept the stranger's key", "--accept", str.key)
	if msgs := maildirMessages(t, maildir); len(msgs) != 4 || !strings.Contains(strings.Join(msgs, ""), "stranger-body") || stranger.Sessions() == 0 {
		t.Fatalf("after --accept of the stranger's: %d messages, %d sessions", len(msgs), stranger.Sessions())
	}

	// The denied sender, again: never a connection.
	notify("x@spam.example", spammer.Addr, 3)
	fetch("the spammer again")
	if spammer.Sessions() != 0 || len(summary()) != 0 {
		t.Errorf("denied: the spammer's store saw %d sessions; left: %+v", spammer.Sessions(), summary())
	}

	// A key that names nothing, and a broken policy: refused, nothing fetched.
	if r := be.run("", "im2000-fetch", "-d", maildir, "--accept", strings.Repeat("ab", 16)); r.code != 100 || !strings.Contains(r.stderr, "no such notification held or pending") {
		t.Errorf("--accept of nothing: exit %d: %s", r.code, r.stderr)
	}
	be.setConf("senderpolicy", "default hold\nallow alice")
	if r := be.run("", "im2000-fetch", "-d", maildir); r.code != 111 || !strings.Contains(r.stderr, policyFile+":2: ") {
		t.Errorf("a broken policy: exit %d: %s", r.code, r.stderr)
	}
}

// TestSenderPolicyEscapes: --summary shows a held sender's invisible
// characters escaped, and an unverified sender's ESC and newline too.
func TestSenderPolicyEscapes(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nx\r\n") })
	held := noteAt(store.Addr, 1, 10)
	held.Notification.Sender = "\u202eevil\u200f@unknown.example" // bidi controls, a valid mailbox
	raw := noteAt(store.Addr, 2, 0)
	raw.Notification.Sender = "\x1b]0;owned\x07ceo@bank.example\nFrom x"
	ag := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return fakeAgent(held, raw) })
	e := newEnv(t, "bob")
	e.setConf("rna", ag.Addr)
	e.setConf("password", "bobpw")
	e.setConf("routes", "_msrap._tcp.unknown.example "+store.Addr+"\n")
	e.setConf("senderpolicy", "default hold")
	maildir := filepath.Join(t.TempDir(), "Maildir")

	r := e.run("", "im2000-fetch", "-d", maildir, "--summary")
	invisible := regexp.MustCompile("[\x00-\x08\x0b-\x1f\x7f\u200e\u200f\u202a-\u202e]")
	if r.code != 0 || invisible.MatchString(r.stdout) || invisible.MatchString(r.stderr) {
		t.Fatalf("--summary: exit %d, raw control characters:\n%q\n%q", r.code, r.stdout, r.stderr)
	}
	lines := parseSummary(t, r.stdout)
	h, ok1 := findSummary(lines, `\u202eevil\u200f@unknown.example`)
	u, ok2 := findSummary(lines, `\x1b]0;owned\aceo@bank.example\nFrom x`)
	if !ok1 || !ok2 || h.verified != "verified" || h.state != "held" || h.size != "10" || h.key != agent.Key(&held) ||
		u.verified != "unverified" || u.state != "dropped" || u.size != "?" {
		t.Errorf("--summary: %q", r.stdout)
	}
	r = e.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || invisible.MatchString(r.stderr) || !strings.Contains(r.stderr, `held `+h.key+` from \u202eevil\u200f@unknown.example`) || store.Sessions() != 0 {
		t.Errorf("a run: exit %d, the store saw %d sessions:\n%q", r.code, store.Sessions(), r.stderr)
	}
}

// TestSenderPolicyPOP3: with the site's "default hold", im2000-pop3d lists
// a notice for each held notification, made without contacting its store;
// a deleted notice does not come back; the user's own policy file, once it
// allows alice, releases her message, which is then retrieved; a denied
// sender's store never sees a connection; a broken policy refuses the
// login.
func TestSenderPolicyPOP3(t *testing.T) {
	stranger := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: stranger@unknown.example\r\nSubject: hello\r\n\r\nstranger-body\r\n")
	})
	spammer := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: spam\r\n\r\nspam\r\n") })
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	pe := newEnv(t, "bob")
	state := filepath.Join(t.TempDir(), "pop3")
	pe.setConf("rna", bobAgent.rnaqp)
	pe.setConf("pop3state", state)
	pe.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n_msrap._tcp.unknown.example "+stranger.Addr+
		"\n_msrap._tcp.spam.example "+spammer.Addr+"\n")
	pe.setConf("senderpolicy", "default hold\ndeny @spam.example")
	pop3Addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, popLog := daemonEnv(t, pe.vars, pop3Addr, filepath.Join(bin, "im2000-pop3d"), "-l", pop3Addr)

	for i, n := range []struct{ sender, where string }{{"stranger@unknown.example", stranger.Addr}, {"x@spam.example", spammer.Addr}} {
		if r := notifyAnon(t, bobAgent.rnasp, n.sender, literal(n.where), byte(i)); r != rnasp.Accepted {
			t.Fatalf("the agent answered %d to %s", r, n.sender)
		}
	}
	id := h.inject("From: alice@example.org\nSubject: one\n\nalice-one\n", "bob@example.net")
	await(t, 5*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })

	// Two notices, alice's and the stranger's; the spammer's dropped.
	p := dialPOP3(t, pop3Addr)
	if r := popLogin(p); r != "+OK bob has 2 messages" {
		t.Fatalf("login with two held: %q", r)
	}
	p.cmd("UIDL")
	uidls := p.multi()
	var texts string
	for _, n := range []string{"1", "2"} {
		if r := p.cmd("RETR " + n); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("RETR %s: %q", n, r)
		}
		texts += p.multi()
	}
	if r := p.cmd("TOP 1 0"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "Subject: held: a message from ") {
		t.Errorf("TOP 1 0 of a notice: %q", r)
	}
	for _, want := range []string{"Subject: held: a message from stranger@unknown.example\n", "Subject: held: a message from alice@example.org\n",
		"  sender:   stranger@unknown.example (verified", "  store:    " + stranger.Addr + "\n", "  allow alice@example.org\n"} {
		if !strings.Contains(texts, want) {
			t.Errorf("the notices do not say %q:\n%s", want, texts)
		}
	}
	p.cmd("DELE 1")
	p.cmd("DELE 2")
	p.cmd("QUIT")
	if stranger.Sessions() != 0 || spammer.Sessions() != 0 {
		t.Fatalf("notices: the stranger's store saw %d sessions, the spammer's %d", stranger.Sessions(), spammer.Sessions())
	}
	if s := recipientStates(t, h.store, "alice", id)["bob@example.net"]; s != "notifying/unread" {
		t.Errorf("alice's held message at her store: %s", s)
	}
	for _, key := range []string{agentKey(t, state, "held", "stranger@unknown.example"), agentKey(t, state, "held", "alice@example.org")} {
		if strings.Contains(uidls, key) {
			t.Errorf("a notice's UIDL is its notification's key %s", key)
		}
	}
	await(t, 5*time.Second, "pop3d's log names the held and the denied", func() bool {
		l := popLog.String()
		return strings.Contains(l, "bob: held ") && strings.Contains(l, "from stranger@unknown.example at "+stranger.Addr+", not retrieved (") &&
			strings.Contains(l, "from x@spam.example at "+spammer.Addr+", not retrieved: denied by ")
	})

	// Deleted notices are not shown again; the notifications stay held.
	p = dialPOP3(t, pop3Addr)
	if r := popLogin(p); r != "+OK bob has 0 messages" {
		t.Fatalf("login after the notices were deleted: %q", r)
	}
	p.cmd("QUIT")

	// bob's own policy allows alice: her message is listed and retrieved.
	writePolicy(t, filepath.Join(state, "bob", "senderpolicy"), "default hold\nallow alice@example.org\n")
	p = dialPOP3(t, pop3Addr)
	if r := popLogin(p); r != "+OK bob has 1 messages" {
		t.Fatalf("login with alice allowed: %q", r)
	}
	if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "alice-one") {
		t.Fatalf("RETR of alice's: %q", r)
	}
	p.cmd("DELE 1")
	p.cmd("QUIT")
	await(t, 5*time.Second, "alice's message silenced", func() bool {
		return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "silenced/readall"
	})
	if stranger.Sessions() != 0 || spammer.Sessions() != 0 {
		t.Errorf("the stranger's store saw %d sessions, the spammer's %d", stranger.Sessions(), spammer.Sessions())
	}

	// A broken policy refuses the login, naming file and line in the log.
	writePolicy(t, filepath.Join(state, "bob", "senderpolicy"), "allow\n")
	p = dialPOP3(t, pop3Addr)
	if r := popLogin(p); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("login with a broken policy: %q", r)
	}
	await(t, 5*time.Second, "pop3d's log names the broken line", func() bool {
		return strings.Contains(popLog.String(), filepath.Join(state, "bob", "senderpolicy")+":1: allow what?")
	})
}

// agentKey is the name of the one entry in a POP3 user's box from sender.
func agentKey(t *testing.T, state, box, sender string) string {
	t.Helper()
	dir := filepath.Join(state, "bob", box)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		var n rnaqp.NotificationAndLocalData
		if err == nil && n.Unmarshal(b) == nil && n.Notification.Sender == sender {
			return e.Name()
		}
	}
	t.Fatalf("no %s entry from %s in %s", box, sender, dir)
	return ""
}

func writePolicy(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
