package tests

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayFirstFolded: a message whose first line starts with a tab or
// a space would, written under the gateway's own Authentication-Results
// field, continue it: "dkim=pass header.d=paypal.com" under this host's
// authserv-id (a hostile review proved bob got exactly that). The gateway
// refuses it at DATA and at BDAT, and stores nothing.
func TestGatewayFirstFolded(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", nil)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	forged := "\tdkim=pass header.d=paypal.com header.i=@paypal.com;\r\n spf=pass smtp.mailfrom=service@paypal.com\r\nFrom: service@paypal.com\r\nSubject: inj\r\n\r\nbody\r\n"
	c.cmd("MAIL FROM:<mallory@evil.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %s", r)
	}
	if r := c.cmd(forged + "."); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("a message starting folded over DATA: %s, want 554 5.6.0", r)
	}
	c.cmd("MAIL FROM:<mallory@evil.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	bdat := " x\r\n" + forged
	fmt.Fprintf(c.c, "BDAT %d LAST\r\n%s", len(bdat), bdat)
	if r := c.reply(); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("a message starting folded over BDAT: %s, want 554 5.6.0", r)
	}
	c.cmd("QUIT")
	if n := len(gatewayArchive(t, g.store)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// TestGatewayDatabytes: with databytes=3000, a message of 3000 octets is
// taken and one of 3001 refused (552 5.3.4), over DATA and over BDAT
// alike: go-smtp's own limit refused exactly 3000 over DATA alone.
func TestGatewayDatabytes(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("databytes", "3000") })
	msg := func(n int) string { // n octets, lines of at most 900
		m := "Subject: size\r\n\r\n"
		for len(m) < n {
			k := min(900, n-len(m)-2)
			m += strings.Repeat("y", max(k, 0)) + "\r\n"
		}
		if len(m) != n {
			t.Fatalf("built %d octets, want %d", len(m), n)
		}
		return m
	}
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	stored := 0
	for _, n := range []int{2999, 3000, 3001} {
		want := "250 "
		if n > 3000 {
			want = "552 5.3.4"
		}
		c.cmd("MAIL FROM:<a@sender.test>")
		c.cmd("RCPT TO:<bob@example.org>")
		c.cmd("DATA")
		if r := c.cmd(msg(n) + "."); !strings.HasPrefix(r, want) {
			t.Errorf("DATA of %d octets: %s, want %s", n, r, want)
		} else if n <= 3000 {
			stored++
		}
		c.cmd("RSET")
		c.cmd("MAIL FROM:<a@sender.test>")
		c.cmd("RCPT TO:<bob@example.org>")
		m := msg(n)
		fmt.Fprintf(c.c, "BDAT %d LAST\r\n%s", len(m), m)
		if r := c.reply(); !strings.HasPrefix(r, want) {
			t.Errorf("BDAT of %d octets: %s, want %s", n, r, want)
		} else if n <= 3000 {
			stored++
		}
		c.cmd("RSET")
	}
	if r := c.cmd("MAIL FROM:<a@sender.test> SIZE=3001"); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("MAIL with SIZE=3001: %s", r)
	}
	c.cmd("QUIT")
	if n := len(gatewayArchive(t, g.store)); n != stored || n != 4 {
		t.Errorf("%d messages stored, want 4", n)
	}
}

// TestGatewayAccountNoLogin: the gateway account (gatewayaccount) cannot
// log in to im2000-submitd or im2000-smtpd even with a password: its
// archive's first lines are what readers show as "via SMTP from", so
// whoever submits as it could forge any SMTP sender.
func TestGatewayAccountNoLogin(t *testing.T) {
	h := newStoreHost(t, "tcpserver", func(e *env) { writePasswords(t, e, "alice", "smtp") })
	cl := newEnv(t, "smtp")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=smtp", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", h.msoap)
	cl.setConf("password", "smtppw")
	cl.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
	if r := cl.run("From: smtp@example.org\nTo: bob@example.net\n\nforged\n", "im2000-inject", "-t"); r.code == 0 {
		t.Errorf("the gateway account submitted over MSOAP: %q", r.stderr)
	}
	if n := msgCount(t, h.store); n != 0 {
		t.Errorf("%d messages at the store from the gateway account", n)
	}

	e, addr := startSMTPD(t)
	writePasswords(t, e, "alice", "smtp")
	c := dialSMTP(t, addr)
	c.cmd("EHLO client.example")
	if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00smtp\x00smtppw"))); !strings.HasPrefix(r, "535") {
		t.Errorf("AUTH as the gateway account at smtpd: %s, want 535", r)
	}
	if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))); !strings.HasPrefix(r, "235") {
		t.Errorf("AUTH as alice at smtpd: %s, want 235", r)
	}
}

// TestGatewayPostmaster: postmaster@DOMAIN, in any case, is accepted
// (RFC 5321 section 4.5.1) and stored for the account the postmaster
// setting names.
func TestGatewayPostmaster(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("postmaster", "bob") })
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	c.cmd("MAIL FROM:<a@sender.test>")
	for _, rcpt := range []string{"<postmaster@example.org>", "<PostMaster@example.org>"} {
		if r := c.cmd("RCPT TO:" + rcpt); !strings.HasPrefix(r, "250") {
			t.Errorf("RCPT TO:%s: %s", rcpt, r)
		}
	}
	c.cmd("DATA")
	if r := c.cmd("Subject: to the postmaster\r\n\r\nhello\r\n."); !strings.HasPrefix(r, "250") {
		t.Fatalf("DATA: %s", r)
	}
	c.cmd("QUIT")
	envs := gatewayArchive(t, g.store)
	if len(envs) != 1 || len(envs[0].Recipients) == 0 {
		t.Fatalf("stored %+v, want one message for bob@example.org", envs)
	}
	for _, r := range envs[0].Recipients {
		if r.Addr.String() != "bob@example.org" {
			t.Errorf("stored for %s, want bob@example.org", r.Addr)
		}
	}
}

// TestGatewayForgedARComments: Authentication-Results fields claiming this
// host behind nested comments, a quoted-pair "\)" or a final dot (the
// hostile review of issue 20: bob got "dkim=pass header.d=paypal.com"
// under his own host's authserv-id) are removed by the gateway; bob's copy
// has the gateway's own field alone.
func TestGatewayForgedARComments(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", nil)
	be, maildir := fetchEnv(t, "bob", g.agent)
	be.setConf("routes", "_msrap._tcp.example.org "+g.msrap+"\n")
	be.setConf("rnasp", g.agent.rnasp)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.evil.test")
	c.cmd("MAIL FROM:<service@paypal.com>")
	c.cmd("RCPT TO:<bob@example.org>")
	c.cmd("DATA")
	if r := c.cmd("Authentication-Results: (checked (by) us) example.org; dkim=pass header.d=paypal.com header.i=@paypal.com\r\n" +
		"Authentication-Results: (\\)) example.org; spf=pass smtp.mailfrom=service@paypal.com\r\n" +
		"Authentication-Results: example.org.; dkim=pass header.d=paypal2.com\r\n" +
		"From: service@paypal.com\r\nSubject: forged-ar\r\n\r\nx\r\n."); !strings.HasPrefix(r, "250") {
		t.Fatalf("DATA: %s", r)
	}
	c.cmd("QUIT")
	var msgs []string
	await(t, 30*time.Second, "bob has it", func() bool {
		be.run("", "im2000-fetch", "-d", maildir)
		msgs = maildirMessages(t, maildir)
		return len(msgs) >= 1
	})
	h, _, _ := strings.Cut(msgs[0], "\r\n\r\n")
	if strings.Contains(h, "paypal.com header") || strings.Contains(h, "spf=pass") || strings.Contains(h, "paypal2.com") ||
		strings.Count(h, "Authentication-Results:") != 1 || !strings.Contains(h, "Authentication-Results: example.org;") {
		t.Errorf("bob's copy keeps a forged field, or lost the gateway's:\n%s", h)
	}
}

// TestGatewayDatabytesZero: databytes 0 gave the store a limit of 8 KiB
// (the gateway's own fields) and go-smtp none (hostile review, issue 20);
// 0 is not "no limit" for the readers either, so the gateway refuses it at
// start, saying which file to mend; so is a gatewayshare over 100.
func TestGatewayDatabytesZero(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", nil)
	g.setConf("databytes", "0")
	e := &env{t: t, store: g.store, conf: g.conf, vars: append(append([]string{}, g.vars...), "IM2000_AGENT="+g.agent.spool)}
	r := e.run("", "im2000-gatewayd")
	if r.code != 111 || !strings.Contains(r.stderr, filepath.Join(g.conf, "databytes")) || !strings.Contains(r.stderr, "at least 1") {
		t.Errorf("databytes 0: exit %d, %q; want 111 naming the file", r.code, r.stderr)
	}
	g.setConf("databytes", "1000")
	g.setConf("gatewayshare", "101")
	if r := e.run("", "im2000-gatewayd"); r.code != 111 || !strings.Contains(r.stderr, filepath.Join(g.conf, "gatewayshare")) {
		t.Errorf("gatewayshare 101: exit %d, %q; want 111 naming the file", r.code, r.stderr)
	}
}

// TestGatewayEmpty: an empty message ("BDAT 0 LAST", or a DATA of "."
// alone) is refused, 554 5.6.0, and nothing is stored (hostile review,
// issue 20: BDAT 0 LAST stored one).
func TestGatewayEmpty(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", nil)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	c.cmd("MAIL FROM:<a@sender.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	fmt.Fprint(c.c, "BDAT 0 LAST\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("BDAT 0 LAST: %s, want 554 5.6.0", r)
	}
	c.cmd("MAIL FROM:<a@sender.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	c.cmd("DATA")
	if r := c.cmd("."); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("an empty DATA: %s, want 554 5.6.0", r)
	}
	c.cmd("QUIT")
	if n := len(gatewayArchive(t, g.store)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}
