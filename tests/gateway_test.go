package tests

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"im2000/lib/store"
)

// gatewayHost is a host of example.org with the SMTP gateway: a store
// (submitd, retrieved), notifyd, bob's agent, and im2000-gatewayd.
type gatewayHost struct {
	*storeHost
	agent   *agentHost
	gateway string // the gateway's address
	logs    *syncBuffer
}

func newGatewayHost(t *testing.T, resolvers string, setup func(*env)) *gatewayHost {
	ag := newAgentHostFor(t, "listener", "example.org", "", "bob")
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", resolvers)
		e.setConf("routes", "_rnasp._tcp.example.org "+ag.rnasp+"\n")
		e.setConf("lists/members", "alice\nsmtp alice@sender.test\n")
		e.setConf("lists/open", "smtp *\n")
		e.setConf("retrybase", "1")
		e.setConf("resend", "2")
		if setup != nil {
			setup(e)
		}
	})
	h.setConf("storelocation", h.msrap)
	_, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	g := &gatewayHost{storeHost: h, agent: ag, gateway: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	_, g.logs = daemonEnv(t, append(append([]string{}, h.vars...), "IM2000_AGENT="+ag.spool), g.gateway, filepath.Join(bin, "im2000-gatewayd"), "-l", g.gateway, "-t", "10")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gatewayd:\n%s\nnotifyd:\n%s", g.logs.String(), nlog.String())
		}
	})
	return g
}

// gatewayArchive reads the gateway account's envelopes.
func gatewayArchive(t *testing.T, root string) []*store.Envelope {
	s, _ := store.Open(root)
	a, _ := s.Account("smtp")
	ids, _ := a.Messages()
	var out []*store.Envelope
	for _, id := range ids {
		if m, err := a.Open(id); err == nil {
			out = append(out, m.Env)
			m.Close()
		}
	}
	return out
}

// TestGatewayPostfix: the SMTP world (a real postfix, relaying through a
// transport map to the gateway) writes to bob and posts to a members-only
// list; bob fetches both, the post through his listd; SPF and DKIM, checked
// against the senders' records served by a real nsd, are in
// Authentication-Results; the reader says "via SMTP from" the envelope
// sender. A non-member's post is refused at DATA, an unknown user and
// another domain at RCPT: postfix's own log says so.
func TestGatewayPostfix(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns := startGatewayNSD(t, map[string]string{
		"sender.test": `@ IN TXT "v=spf1 ip4:127.0.0.1 -all"
sel._domainkey IN TXT "v=DKIM1; k=ed25519; p=` + base64.StdEncoding.EncodeToString(pub) + `"
`,
		"fail.test": `@ IN TXT "v=spf1 ip4:192.0.2.1 -all"
`,
	})
	g := newGatewayHost(t, dns, nil)
	pf := startPostfix(t, "", "* smtp:["+strings.Replace(g.gateway, ":", "]:", 1)+"\n")

	// bob reads his mail and follows the list members.
	be, maildir := fetchEnv(t, "bob", g.agent)
	be.setConf("routes", "_msrap._tcp.example.org "+g.msrap+"\n")
	be.setConf("rnasp", g.agent.rnasp)
	be.setConf("listfile", "members "+g.msrap+"\n")
	be.setConf("listdstate", filepath.Join(t.TempDir(), "listd"))
	be.setConf("listinterval", "1")
	daemonEnv(t, be.vars, "", filepath.Join(bin, "im2000-listd"))
	time.Sleep(1500 * time.Millisecond) // listd follows from "now"

	signed := sign(t, key, "From: Alice <alice@sender.test>\r\nTo: bob@example.org\r\nSubject: signed hello\r\nDate: Wed, 02 Dec 2026 09:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nA signed message.\r\n")
	pf.send(t, "alice@sender.test", []string{"bob@example.org"}, signed)
	pf.send(t, "mallory@fail.test", []string{"Bob@example.org"}, "From: mallory@fail.test\r\nSubject: unsigned hello\r\nAuthentication-Results: example.org; spf=pass smtp.mailfrom=mallory@fail.test\r\n\r\nA forged result above.\r\n")
	pf.send(t, "alice@sender.test", []string{"members@example.org"}, "From: alice@sender.test\r\nSubject: members post\r\n\r\npost-smtp1\r\n")
	pf.send(t, "eve@fail.test", []string{"members@example.org"}, "From: eve@fail.test\r\nSubject: not a member\r\n\r\npost-eve\r\n")
	pf.send(t, "eve@fail.test", []string{"nobody@example.org"}, "Subject: unknown user\r\n\r\nx\r\n")
	pf.send(t, "eve@fail.test", []string{"someone@elsewhere.test"}, "Subject: relay\r\n\r\nx\r\n")

	pf.status(t, "bob@example.org", "sent")
	pf.status(t, "members@example.org", "sent")
	if l := pf.status(t, "members@example.org", "bounced"); !strings.Contains(l, "550 5.7.1") || !strings.Contains(l, "end of DATA") {
		t.Errorf("the non-member's post: %s", l)
	}
	if l := pf.status(t, "nobody@example.org", "bounced"); !strings.Contains(l, "550 5.1.1") || !strings.Contains(l, "RCPT TO") {
		t.Errorf("the unknown user: %s", l)
	}
	if l := pf.status(t, "someone@elsewhere.test", "bounced"); !strings.Contains(l, "550 5.7.1") || !strings.Contains(l, "RCPT TO") {
		t.Errorf("another domain: %s", l)
	}
	envs := gatewayArchive(t, g.store)
	if len(envs) != 3 {
		t.Fatalf("%d messages in the gateway's archive, want 3 (bob's two, the post)", len(envs))
	}
	for _, e := range envs {
		if e.Sender.String() != "smtp@example.org" {
			t.Errorf("sender %s, want the gateway account", e.Sender)
		}
	}

	var msgs []string
	await(t, 60*time.Second, "bob has both messages and the post", func() bool {
		be.run("", "im2000-fetch", "-d", maildir)
		msgs = maildirMessages(t, maildir)
		return len(msgs) >= 3
	})
	time.Sleep(2 * time.Second)
	be.run("", "im2000-fetch", "-d", maildir)
	if msgs = maildirMessages(t, maildir); len(msgs) != 3 {
		t.Fatalf("bob has %d messages, want 3", len(msgs))
	}
	byText := func(s string) string {
		for _, m := range msgs {
			if strings.Contains(m, s) {
				return m
			}
		}
		t.Fatalf("no message with %q in bob's Maildir", s)
		return ""
	}
	header := func(m string) string {
		h, _, _ := strings.Cut(strings.ReplaceAll(m, "\r\n", "\n"), "\n\n")
		return strings.ReplaceAll(strings.ReplaceAll(h, "\n\t", " "), "\n ", " ")
	}
	s := header(byText("Subject: signed hello")) // not "unsigned hello"
	for _, want := range []string{"Return-Path: <smtp@example.org>", "(via SMTP from <alice@sender.test>)", "spf=pass", "dkim=pass", "header.d=sender.test"} {
		if !strings.Contains(s, want) {
			t.Errorf("the signed message lacks %q:\n%s", want, s)
		}
	}
	u := header(byText("Subject: unsigned hello"))
	for _, want := range []string{"(via SMTP from <mallory@fail.test>)", "Authentication-Results: example.org; spf=fail", "dkim=none"} {
		if !strings.Contains(u, want) {
			t.Errorf("the unsigned message lacks %q:\n%s", want, u)
		}
	}
	if strings.Contains(u, "spf=pass") || strings.Count(u, "Return-Path") != 1 {
		t.Errorf("the sender's own Authentication-Results for example.org, or a second Return-Path, went through:\n%s", u)
	}
	// A list notification's sender is the list (LIST@DOMAIN), not the
	// gateway account, so the reader cannot tell the gateway's post from
	// another poster's: it shows no "via SMTP" there, the gateway's
	// Received stays, and its Authentication-Results, naming the reader's
	// host, goes: any poster could have written one just like it (RFC
	// 8601 section 5; lib/trace/authres.go).
	p := header(byText("post-smtp1"))
	if strings.Contains(p, "via SMTP") || !strings.Contains(p, "(im2000-gatewayd) with ESMTP") || strings.Contains(p, "Authentication-Results: example.org") {
		t.Errorf("the post:\n%s", p)
	}
	if strings.Contains(strings.Join(msgs, ""), "post-eve") {
		t.Error("the non-member's post reached a reader")
	}
}

// sign signs msg for sender.test with selector sel, as the sender's MTA would.
func sign(t *testing.T, key ed25519.PrivateKey, msg string) string {
	var b bytes.Buffer
	if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: "sender.test", Selector: "sel", Signer: key}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestGatewayListSPFFail: a stranger gives a member's envelope sender from
// a host the member's domain's SPF record forbids (-all): the post by that
// member's right is refused at DATA (550 5.7.23) and nothing is stored,
// since readers remove the gateway's Authentication-Results from list
// posts and would not see the forgery (hostile review, issue 20). The
// same sender to an open list ("smtp *") is taken, its spf=fail recorded.
func TestGatewayListSPFFail(t *testing.T) {
	dns := startGatewayNSD(t, map[string]string{"sender.test": "@ IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n"})
	g := newGatewayHost(t, dns, nil)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.evil.test")
	c.cmd("MAIL FROM:<alice@sender.test>")
	c.cmd("RCPT TO:<members@example.org>")
	c.cmd("DATA")
	if r := c.cmd("From: alice@sender.test\r\nSubject: wire the money\r\n\r\nx\r\n."); !strings.HasPrefix(r, "550 5.7.23") {
		t.Errorf("a forged member's post: %s, want 550 5.7.23", r)
	}
	if n := len(gatewayArchive(t, g.store)); n != 0 {
		t.Errorf("%d messages stored after the forged post, want none", n)
	}
	c.cmd("MAIL FROM:<alice@sender.test>")
	c.cmd("RCPT TO:<open@example.org>")
	c.cmd("DATA")
	if r := c.cmd("From: alice@sender.test\r\nSubject: open\r\n\r\nx\r\n."); !strings.HasPrefix(r, "250") {
		t.Errorf("a post to the open list: %s, want 250", r)
	}
	c.cmd("QUIT")
	if envs := gatewayArchive(t, g.store); len(envs) != 1 || len(envs[0].Lists) != 1 {
		t.Errorf("stored %+v, want the open list's post", envs)
	}
	if !strings.Contains(g.logs.String(), "SPF fail") {
		t.Errorf("no log line for the refused post:\n%s", g.logs.String())
	}
}

// gatewayHeaders reads the header of every message in the gateway
// account's archive, as stored.
func gatewayHeaders(t *testing.T, root string) []string {
	s, _ := store.Open(root)
	a, _ := s.Account("smtp")
	ids, _ := a.Messages()
	var out []string
	for _, id := range ids {
		m, err := a.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(m.Body())
		m.Close()
		h, _, _ := strings.Cut(string(b), "\r\n\r\n")
		out = append(out, strings.ReplaceAll(strings.ReplaceAll(h, "\r\n\t", " "), "\r\n ", " "))
	}
	return out
}

// TestGatewayDKIMFail: a message signed for sender.test whose body was
// changed after signing is recorded dkim=fail for header.d=sender.test,
// and the same message as signed dkim=pass: the verification is the
// library's, and a bad signature is not taken for none.
func TestGatewayDKIMFail(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns := startGatewayNSD(t, map[string]string{"sender.test": `@ IN TXT "v=spf1 ip4:127.0.0.1 -all"
sel._domainkey IN TXT "v=DKIM1; k=ed25519; p=` + base64.StdEncoding.EncodeToString(pub) + `"
`})
	g := newGatewayHost(t, dns, nil)
	signed := sign(t, key, "From: alice@sender.test\r\nTo: bob@example.org\r\nSubject: pay\r\n\r\nPay 10 EUR to alice.\r\n")
	altered := strings.Replace(signed, "Pay 10 EUR to alice.", "Pay 10000 EUR to mallory.", 1)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	for _, m := range []string{altered, signed} {
		c.cmd("MAIL FROM:<alice@sender.test>")
		c.cmd("RCPT TO:<bob@example.org>")
		c.cmd("DATA")
		if r := c.cmd(m + "."); !strings.HasPrefix(r, "250") {
			t.Fatalf("DATA: %s", r)
		}
	}
	c.cmd("QUIT")
	hs := gatewayHeaders(t, g.store)
	if len(hs) != 2 {
		t.Fatalf("%d messages stored, want 2", len(hs))
	}
	var fails, passes int
	for _, h := range hs {
		switch {
		case strings.Contains(h, "dkim=fail") && strings.Contains(h, "header.d=sender.test") && !strings.Contains(h, "dkim=pass"):
			fails++
		case strings.Contains(h, "dkim=pass") && strings.Contains(h, "header.d=sender.test"):
			passes++
		}
		if !strings.Contains(h, "spf=pass") {
			t.Errorf("no spf=pass:\n%s", h)
		}
	}
	if fails != 1 || passes != 1 {
		t.Errorf("%d dkim=fail and %d dkim=pass, want one each:\n%s", fails, passes, strings.Join(hs, "\n---\n"))
	}
}
