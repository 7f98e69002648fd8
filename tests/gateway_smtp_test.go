package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewaySwaks: swaks against the gateway: a pipelined transaction over
// STARTTLS to bob and a list, a 10 MB message, bad commands, and an
// open-relay attempt; the messages are committed once each, nothing else.
func TestGatewaySwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	dns := startGatewayNSD(t, map[string]string{"sender.test": "@ IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n"})
	g := newGatewayHost(t, dns, func(e *env) {
		e.setConf("databytes", fmt.Sprint(12<<20))
		withTLS(t, e)
	})
	host, port, _ := net.SplitHostPort(g.gateway)
	swaks := func(args ...string) string {
		out, _ := exec.Command("swaks", append([]string{"--server", host, "--port", port, "--from", "alice@sender.test", "--helo", "mx.sender.test"}, args...)...).CombinedOutput()
		return string(out)
	}
	if out := swaks("--pipeline", "--tls", "--to", "bob@example.org,open@example.org,BOB@EXAMPLE.ORG"); !strings.Contains(out, "250 2.0.0 OK: stored as ") || strings.Contains(out, "<** ") {
		t.Fatalf("pipelined over STARTTLS:\n%s", out)
	}
	big := filepath.Join(t.TempDir(), "big.eml")
	var b strings.Builder
	b.WriteString("From: alice@sender.test\r\nTo: bob@example.org\r\nSubject: ten megabytes\r\n\r\n")
	for b.Len() < 10<<20 {
		b.WriteString("0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n")
	}
	os.WriteFile(big, []byte(b.String()), 0o644)
	if out := swaks("--pipeline", "--to", "bob@example.org", "--data", "@"+big); !strings.Contains(out, "250 2.0.0 OK: stored as ") {
		t.Fatalf("10 MB:\n%s", out[max(0, len(out)-2000):])
	}
	if out := swaks("--to", "someone@elsewhere.test"); !strings.Contains(out, "550 5.7.1 Relaying denied") {
		t.Fatalf("an open-relay attempt was not refused:\n%s", out)
	}
	if out := swaks("--to", "bob@example.org@elsewhere.test"); !strings.Contains(out, "<** 5") {
		t.Fatalf("a source-routed relay attempt was not refused:\n%s", out)
	}
	if out := swaks("--to", "nobody@example.org"); !strings.Contains(out, "550 5.1.1") {
		t.Fatalf("an unknown user was not refused:\n%s", out)
	}

	// Bad commands, by hand: each gets its error and the session goes on.
	c := dialSMTP(t, g.gateway)
	for _, step := range []struct{ cmd, want string }{
		{"EHLO client.test", "250"},
		{"RCPT TO:<bob@example.org>", "5"}, // before MAIL
		{"DATA", "5"},
		{"MAIL FROM:<bad address>", "5"},
		{"FROB", "5"},
		{"MAIL FROM:<alice@sender.test> SIZE=999999999", "5"},
		{"MAIL FROM:<alice@sender.test>", "250"},
		{"RCPT TO:<" + strings.Repeat("x", 300) + "@example.org>", "5"},
		{"RCPT TO:<bob@example.org>", "250"},
		{"RSET", "250"},
		{"DATA", "5"}, // RSET dropped the transaction
		{"QUIT", "221"},
	} {
		if got := c.cmd(step.cmd); !strings.HasPrefix(got, step.want) {
			t.Errorf("%s: %q, want %s...", step.cmd, got, step.want)
		}
	}
	envs := gatewayArchive(t, g.store)
	if len(envs) != 2 {
		t.Fatalf("%d messages in the gateway's archive, want 2", len(envs))
	}
	if e := envs[0]; len(envs[1].Lists)+len(e.Lists) != 1 || len(e.Recipients)+len(envs[1].Recipients) != 2 {
		t.Errorf("the envelopes: %+v %+v", e, envs[1])
	}
}

// TestGatewayHostile: a client that trickles a byte at a time is closed at
// the session's lifetime, a flood of sessions from one address stops at
// sessionsperaddr, and another client is served all the while.
func TestGatewayHostile(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) {
		e.setConf("sessionlifetime", "3")
		e.setConf("sessionsperaddr", "4")
	})
	// The trickler: one octet every 300 ms, never idle for the timeout.
	trickle, err := net.Dial("tcp", g.gateway)
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	done := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		var got strings.Builder
		trickle.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			n, err := trickle.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				done <- got.String()
				return
			}
		}
	}()
	go func() {
		for _, c := range []byte("EHLO trickle.test\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n") {
			if _, err := trickle.Write([]byte{c}); err != nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	// The flood: sessions held open from the same address.
	var held []net.Conn
	refused := 0
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", g.gateway)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 512)
		n, _ := c.Read(line)
		if strings.HasPrefix(string(line[:n]), "421 4.7.0 Too many sessions") {
			refused++
		} else if strings.HasPrefix(string(line[:n]), "220") {
			held = append(held, c)
		}
	}
	if len(held) != 3 || refused != 7 { // the trickler holds the fourth slot
		t.Errorf("%d sessions held and %d refused, want 3 and 7", len(held), refused)
	}
	select {
	case got := <-done:
		if !strings.Contains(got, "421") {
			t.Errorf("the trickler was closed without a 421:\n%s", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the trickler was not closed at the session lifetime")
	}
	for _, c := range held {
		c.Close()
	}
	// Slots are given back: a client is served.
	await(t, 10*time.Second, "a session after the flood", func() bool {
		c, err := net.Dial("tcp", g.gateway)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line := make([]byte, 512)
		n, _ := c.Read(line)
		return strings.HasPrefix(string(line[:n]), "220")
	})
	if !strings.Contains(g.logs.String(), "im2000-gatewayd: warning: limit: 127.0.0.1:") || !strings.Contains(g.logs.String(), ": session lifetime of 3s over, closed") {
		t.Errorf("no log line for the trickler:\n%s", g.logs.String())
	}
	// As a listener, gatewayd logs the settings in force at start.
	if s := settingsLines("im2000-gatewayd", g.logs); len(s) != 1 || !strings.Contains(s[0], " sessionlifetime=3 ") || !strings.Contains(s[0], " sessionsperaddr=4 ") {
		t.Errorf("gatewayd's settings lines: %q", s)
	}
}

// TestGatewayShare: one client address may fill at most gatewayshare
// percent (default 10) of the gateway account's quota: with a quota of
// 200,000 octets, a third message of 8,000 from one address (each charged
// with the gateway's own fields, some 750 octets here: TestGatewayShareCharged)
// is answered 452 4.3.1, a smaller one that fits what is left is still taken (the
// refusal spent nothing), and another address is not held back (hostile
// review, issue 20: one stranger filled the quota for everyone).
func TestGatewayShare(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("quota", "200000") })
	msg := func(n int) string {
		return "Subject: filler\r\n\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", (n-19)/100)
	}
	send := func(c *smtpConn, n int) string {
		c.cmd("MAIL FROM:<m@evil.test>")
		c.cmd("RCPT TO:<bob@example.org>")
		c.cmd("DATA")
		return c.cmd(msg(n) + ".")
	}
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.evil.test")
	for i, step := range []struct {
		n    int
		want string
	}{{8000, "250"}, {8000, "250"}, {8000, "452 4.3.1"}, {1000, "250"}, {8000, "452 4.3.1"}} {
		if r := send(c, step.n); !strings.HasPrefix(r, step.want) {
			t.Errorf("message %d of %d octets from 127.0.0.1: %s, want %s", i+1, step.n, r, step.want)
		}
	}
	c.cmd("QUIT")
	c2 := dialSMTPFrom(t, g.gateway, "127.0.0.2")
	c2.cmd("EHLO mx.friend.test")
	if r := send(c2, 9000); !strings.HasPrefix(r, "250") {
		t.Errorf("another address after the first's share was spent: %s, want 250", r)
	}
	if n := len(gatewayArchive(t, g.store)); n != 4 {
		t.Errorf("%d messages stored, want 4", n)
	}
	if !strings.Contains(g.logs.String(), "share full: 127.0.0.1:") {
		t.Errorf("no share full line:\n%s", g.logs.String())
	}
}
