package tests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// forgedMsg is what an attacker's store serves.
const forgedMsg = "Return-Path: <ceo@bank.example>\r\nFrom: CEO <ceo@bank.example>\r\nSubject: pay now\r\n\r\nwire-the-money\r\n"

// notifyAnon sends one notification to an agent as any RNASP client can,
// without authenticating, and returns the agent's result for it.
func notifyAnon(t *testing.T, agent, sender string, where wire.ServiceLocation, id byte) uint64 {
	t.Helper()
	c := dialProto(t, rnasp.Protocol, agent)
	defer c.Close()
	r, err := session.Expect[*rnasp.NotifyOK](c, &rnasp.Notify{Notifications: []rnasp.Notification{{
		StoreClear: where, Recipient: mb("bob", "example.net"), ID: msgid.ID{0xbb, id}, Sender: sender}}})
	if err != nil {
		t.Fatalf("notifying %q: %v", sender, err)
	}
	if len(r.Results) == 0 {
		return rnasp.Accepted
	}
	return r.Results[0]
}

// popLogin logs in as bob with his real password.
func popLogin(p *pop3) string {
	p.cmd("USER bob")
	return p.cmd("PASS bobpw")
}

func literal(addr string) wire.ServiceLocation {
	return wire.ServiceLocation{Literals: []wire.AddrPort{netip.MustParseAddrPort(addr)}}
}

// TestSenderBinding: notifications whose store the sender's domain does not
// publish reach neither bob's Maildir nor his POP3 maildrop, and their
// stores see no connection; the logs say why. A real message from alice's
// store arrives with the reader's trace fields, her forged Return-Path
// gone, by fetch and by POP3.
func TestSenderBinding(t *testing.T) {
	dns := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{}) // bank.example: NXDOMAIN
	fake := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore(forgedMsg) })
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))

	// bob reads with fetch and with pop3d. His routes bind example.org to
	// alice's store, and evil.example (a domain-form location) to the fake.
	routes := "_msrap._tcp.example.org " + h.msrap + "\n_msrap._tcp.evil.example " + fake.Addr + "\n"
	be, maildir := fetchEnv(t, "bob", bobAgent)
	be.setConf("routes", routes)
	be.setConf("resolvers", dns.Addr)
	pe := newEnv(t, "bob")
	pe.setConf("rna", bobAgent.rnaqp)
	pe.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	pe.setConf("routes", routes)
	pe.setConf("resolvers", dns.Addr)
	pop3Addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, popLog := daemonEnv(t, pe.vars, pop3Addr, filepath.Join(bin, "im2000-pop3d"), "-l", pop3Addr)

	claims := []struct {
		sender string
		where  wire.ServiceLocation
		why    string
	}{
		{"ceo@bank.example", literal(fake.Addr), "_msrap._tcp.bank.example"},                                       // no such domain
		{"ceo@bank.example", wire.ServiceLocation{Domain: []string{"evil", "example"}}, "not the sender's domain"}, // another domain
		{"alice@example.org", literal(fake.Addr), "_msrap._tcp.example.org does not lead to"},                      // not alice's store
	}
	forge := func() {
		for i, c := range claims {
			if r := notifyAnon(t, bobAgent.rnasp, c.sender, c.where, byte(i)); r != rnasp.Accepted {
				t.Fatalf("the agent answered %d to %q; the reader is what this test is about", r, c.sender)
			}
		}
	}

	// fetch.
	forge()
	r := be.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 0 || fake.Sessions() != 0 {
		t.Fatalf("fetch with forged notifications: exit %d, %d messages, the fake store saw %d sessions: %s",
			r.code, len(maildirMessages(t, maildir)), fake.Sessions(), r.stderr)
	}
	for _, c := range claims {
		line := fmt.Sprintf("im2000-fetch: warning: dropped unverified: ID from %s at %s, not retrieved: sender not verified: ", c.sender, c.where)
		re := regexp.MustCompile(`(?m)^im2000-fetch: warning: dropped unverified: [0-9a-f]+ from ` + regexp.QuoteMeta(fmt.Sprintf("%s at %s, not retrieved: sender not verified: ", c.sender, c.where)))
		if !re.MatchString(r.stderr) || !strings.Contains(r.stderr, c.why) {
			t.Errorf("fetch's log does not say %q (%s):\n%s", line, c.why, r.stderr)
		}
	}
	if r := be.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
		t.Errorf("dropped notifications still pending: %q", r.stdout)
	}

	// POP3.
	forge()
	p := dialPOP3(t, pop3Addr)
	if r := popLogin(p); r != "+OK bob has 0 messages" {
		t.Fatalf("POP3 login with forged notifications: %q", r)
	}
	if r := p.cmd("LIST"); r != "+OK" || p.multi() != "" {
		t.Errorf("POP3 LIST: %q", r)
	}
	p.cmd("QUIT")
	if fake.Sessions() != 0 {
		t.Errorf("the fake store saw %d sessions through pop3d", fake.Sessions())
	}
	await(t, 5*time.Second, "pop3d's log names the claims", func() bool {
		dropped := regexp.MustCompile(`(?m)^im2000-pop3d: warning: dropped unverified: \S+: bob: [0-9a-f]+ from `)
		return len(dropped.FindAllString(popLog.String(), -1)) == len(claims) && strings.Contains(popLog.String(), " from ceo@bank.example at "+fake.Addr+", not retrieved: ")
	})

	// A real message, with a Return-Path forged at submission: fetch.
	real := "Return-Path: <ceo@bank.example>\nFrom: alice@example.org\nSubject: real\n\nfrom-alice\n"
	traced := func(where, msg string) {
		t.Helper()
		msg = strings.ReplaceAll(msg, "\r\n", "\n")
		head, _, _ := strings.Cut(msg, "\n\n")
		if !strings.HasPrefix(msg, "Return-Path: <alice@example.org>\nReceived: from [127.0.0.1] ([127.0.0.1]) (store "+h.msrap+") by") ||
			strings.Count(strings.ToLower(head), "\nreturn-path:") != 0 || strings.Count(head, "Received:") != 1 ||
			!strings.Contains(head, "with MSRAP id ") || !strings.Contains(msg, "from-alice") {
			t.Errorf("%s: not one Return-Path <alice@example.org> and one Received:\n%s", where, msg)
		}
	}
	id := h.inject(real, "bob@example.net")
	await(t, 5*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	if r := be.run("", "im2000-fetch", "-d", maildir); r.code != 0 || len(maildirMessages(t, maildir)) != 1 {
		t.Fatalf("fetching alice's message: exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	traced("fetch", maildirMessages(t, maildir)[0])
	if s := recipientStates(t, h.store, "alice", id)["bob@example.net"]; s != "silenced/readall" {
		t.Errorf("alice's message after fetch: %s", s)
	}

	// And by POP3: RETR and TOP 0.
	id = h.inject(real, "bob@example.net")
	await(t, 5*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	p = dialPOP3(t, pop3Addr)
	if r := popLogin(p); r != "+OK bob has 1 messages" {
		t.Fatalf("POP3 login with alice's message: %q", r)
	}
	if r := p.cmd("TOP 1 0"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("TOP: %q", r)
	}
	top := p.multi()
	if !strings.HasPrefix(top, "Return-Path: <alice@example.org>\nReceived: ") || strings.Count(top, "Return-Path") != 1 || strings.Count(top, "Received:") != 1 {
		t.Errorf("TOP 1 0: %q", top)
	}
	if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("RETR: %q", r)
	}
	traced("POP3 RETR", p.multi())
	p.cmd("QUIT")
	if fake.Sessions() != 0 {
		t.Errorf("the fake store saw %d sessions", fake.Sessions())
	}
}

// controls is what must never reach a terminal raw.
var controls = regexp.MustCompile("[\x00-\x08\x0b-\x1f\x7f]")

// TestHostileSenders: senders with LF, CR, ESC, NUL and 1,000 octets, from
// an agent that hands them out as they are: --summary and the log show
// them escaped, and --stdout writes one mbox message, the real one.
func TestHostileSenders(t *testing.T) {
	good := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: alice@example.org\r\nSubject: good\r\n\r\nFrom the start of a line\r\n")
	})
	senders := []string{
		"ceo@bank.example\nFrom evil@bank.example Mon Jan  1 00:00:00 2026",
		"ceo@bank.example\r\nX-Evil: yes",
		"\x1b]0;owned\x07\x1b[2Jceo@bank.example",
		"ceo\x00@bank.example",
		strings.Repeat("x", 1000) + "@bank.example",
	}
	var notes []rnaqp.NotificationAndLocalData
	for i, s := range senders {
		n := noteAt(good.Addr, byte(10+i), 0)
		n.Notification.Sender = s
		notes = append(notes, n)
	}
	notes = append(notes, noteAt(good.Addr, 1, 0)) // alice's, at her store
	ag := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return fakeAgent(notes...) })
	e := newEnv(t, "bob")
	e.setConf("rna", ag.Addr)
	e.setConf("password", "bobpw")
	e.setConf("routes", "_msrap._tcp.example.org "+good.Addr+"\n_msrap._tcp.bank.example "+good.Addr+"\n")
	maildir := filepath.Join(t.TempDir(), "Maildir")

	r := e.run("", "im2000-fetch", "-d", maildir, "--summary")
	if controls.MatchString(r.stdout) || controls.MatchString(r.stderr) || strings.Count(r.stdout, "\n") != len(notes) {
		t.Errorf("--summary: raw control characters, or not one line per notification:\n%q\n%q", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, `\x1b]0;owned\a\x1b[2Jceo@bank.example`) || !strings.Contains(r.stdout, `ceo@bank.example\nFrom evil@`) {
		t.Errorf("--summary does not show the senders escaped: %q", r.stdout)
	}
	r = e.run("", "im2000-fetch", "-d", maildir, "--stdout")
	if r.code != 0 || controls.MatchString(r.stdout) || controls.MatchString(r.stderr) {
		t.Errorf("--stdout: exit %d, raw control characters:\n%q\n%q", r.code, r.stdout, r.stderr)
	}
	if n := len(regexp.MustCompile(`(?m)^From `).FindAllString(r.stdout, -1)); n != 1 || !strings.HasPrefix(r.stdout, "From alice@example.org ") ||
		!strings.Contains(r.stdout, "\nReturn-Path: <alice@example.org>\nReceived: ") || !strings.Contains(r.stdout, "\n>From the start of a line\n") {
		t.Errorf("--stdout: %d mbox messages, want alice's alone:\n%s", n, r.stdout)
	}
	if strings.Count(r.stderr, "im2000-fetch: warning: dropped unverified: ") != len(senders) || !strings.Contains(r.stderr, `ceo@bank.example\r\nX-Evil: yes`) {
		t.Errorf("the log does not name each unverified sender, escaped:\n%s", r.stderr)
	}
	if good.Commands() == 0 {
		t.Error("alice's message was not retrieved")
	}
}
