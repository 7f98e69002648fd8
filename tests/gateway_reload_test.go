package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
)

// TestGatewayReload: gatewayd -l logs its settings at start and on SIGHUP
// reads them again, in the same process: a session begun after it takes
// a larger databytes and a new domain, one begun before keeps the old
// ones; settings that do not load (a bad number, a certificate that is not
// there) are logged and leave those in force; a pair named anew, or
// rewritten in place, is served after SIGHUP.
func TestGatewayReload(t *testing.T) {
	var ca *tlstest.CA
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) {
		e.setConf("databytes", "3000")
		ca = withTLS(t, e)
	})
	// A gatewayd of this test's own, to signal.
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gw, logs := daemonEnv(t, append(append([]string{}, g.vars...), "IM2000_AGENT="+g.agent.spool), addr, filepath.Join(bin, "im2000-gatewayd"), "-l", addr, "-t", "10")
	settings := func() []string {
		return regexp.MustCompile(`(?m)^im2000-gatewayd: info: settings: .*$`).FindAllString(logs.String(), -1)
	}
	hup := func(what string, n int) {
		t.Helper()
		gw.Process.Signal(syscall.SIGHUP)
		await(t, 5*time.Second, what, func() bool { return len(settings()) == n })
	}
	await(t, 5*time.Second, "gatewayd's settings line", func() bool { return len(settings()) == 1 })
	if s := settings()[0]; !strings.Contains(s, " databytes=3000 ") || !strings.Contains(s, ` tlscert="tls.crt" `) {
		t.Errorf("gatewayd's settings line: %s", s)
	}
	// mail checks what a session takes: a message of size octets declared
	// at MAIL, and a recipient at example.com.
	mail := func(c *smtpConn, size int, wantSize, wantCom string) {
		t.Helper()
		if r := c.cmd(fmt.Sprintf("MAIL FROM:<a@sender.test> SIZE=%d", size)); !strings.HasPrefix(r, wantSize) {
			t.Errorf("MAIL with SIZE=%d: %s, want %s", size, r, wantSize)
		}
		c.cmd("RSET")
		c.cmd("MAIL FROM:<a@sender.test>")
		if r := c.cmd("RCPT TO:<bob@example.com>"); !strings.HasPrefix(r, wantCom) {
			t.Errorf("RCPT to example.com: %s, want %s", r, wantCom)
		}
		c.cmd("RSET")
	}
	session := func() *smtpConn {
		c := dialSMTP(t, addr)
		c.cmd("EHLO mx.sender.test")
		return c
	}
	before := session()
	mail(before, 5000, "552 5.3.4", "550 5.7.1")

	g.setConf("databytes", "10000")
	g.setConf("domains", "example.org\nexample.com\n")
	hup("the settings line after SIGHUP", 2)
	if s := settings()[1]; !strings.Contains(s, " databytes=10000 ") || !strings.Contains(s, " domains=lines:2 ") {
		t.Errorf("gatewayd's settings line after SIGHUP: %s", s)
	}
	after := session()
	mail(after, 5000, "250", "250")
	// The message itself, past the old limit: go-smtp's server is new too.
	after.cmd("MAIL FROM:<a@sender.test>")
	after.cmd("RCPT TO:<bob@example.com>")
	after.cmd("DATA")
	body := "Subject: reloaded\r\n\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", 50)
	if r := after.cmd(body + "."); !strings.HasPrefix(r, "250 2.0.0 OK: stored as ") {
		t.Errorf("a message of %d octets after SIGHUP: %s", len(body), r)
	}
	mail(before, 5000, "552 5.3.4", "550 5.7.1") // began with the old settings
	if err := gw.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("gatewayd (pid %d) is gone after SIGHUP: %v", gw.Process.Pid, err)
	}

	// Settings that do not load: logged, those in force stay.
	g.setConf("databytes", "lots")
	gw.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-gatewayd: warning: SIGHUP: ") && strings.Contains(logs.String(), "databytes: want a whole number")
	})
	mail(session(), 5000, "250", "250")
	mail(session(), 20000, "552 5.3.4", "250")
	if n := len(settings()); n != 2 {
		t.Errorf("a SIGHUP that did not load logged settings (%d lines)", n)
	}

	// The certificate: the pair served, one named anew, one rewritten in
	// place, and a name of no file (which does not load).
	g.setConf("databytes", "10000")
	if s := startTLSSerial(t, addr, ca); s != 1 {
		t.Errorf("serial %d served at start, want 1", s)
	}
	ca.WriteLeaf(t, filepath.Join(g.conf, "new.crt"), filepath.Join(g.conf, "new.key"), 2, "127.0.0.1")
	g.setConf("tlscert", "new.crt")
	g.setConf("tlskey", "new.key")
	hup("the settings line after SIGHUP with a new pair", 3)
	if s := startTLSSerial(t, addr, ca); s != 2 {
		t.Errorf("serial %d served after SIGHUP named a new pair, want 2", s)
	}
	ca.WriteLeaf(t, filepath.Join(g.conf, "new.crt"), filepath.Join(g.conf, "new.key"), 3, "127.0.0.1")
	hup("the settings line after SIGHUP with the pair rewritten", 4)
	if !strings.Contains(logs.String(), "im2000-gatewayd: info: tls: SIGHUP: certificate of ") {
		t.Error("no line for the pair read again on SIGHUP")
	}
	if s := startTLSSerial(t, addr, ca); s != 3 {
		t.Errorf("serial %d served after the pair was rewritten, want 3", s)
	}
	g.setConf("tlscert", "missing.crt")
	g.setConf("tlskey", "missing.key")
	gw.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the warning for a pair that does not load", func() bool {
		return strings.Count(logs.String(), "im2000-gatewayd: warning: SIGHUP: ") == 2
	})
	if s := startTLSSerial(t, addr, ca); s != 3 {
		t.Errorf("serial %d served after a SIGHUP whose pair did not load, want 3", s)
	}
	if n := len(settings()); n != 4 {
		t.Errorf("%d settings lines, want 4", n)
	}
}

// startTLSSerial starts TLS in an SMTP session at addr and returns the
// serial number of the leaf served.
func startTLSSerial(t *testing.T, addr string, ca *tlstest.CA) int64 {
	t.Helper()
	c := dialSMTP(t, addr)
	c.cmd("EHLO mx.sender.test")
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220") {
		t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.c, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after STARTTLS: %v", err)
	}
	defer tc.Close()
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestGatewayReloadKeepsPerAddr: the sessions an address holds count
// against the cap after a SIGHUP that changes it (the review found that a
// new generation began with empty counts: 5 sessions at once under a cap
// of 3).
func TestGatewayReloadKeepsPerAddr(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("sessionsperaddr", "2") })
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(filepath.Join(bin, "im2000-gatewayd"), "-l", addr, "-t", "10")
	cmd.Env = append(append([]string{}, g.vars...), "IM2000_AGENT="+g.agent.spool)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	await(t, 5*time.Second, "gatewayd's settings", func() bool { return strings.Contains(logs.String(), "info: settings:") })
	// open holds a session open and says whether it was greeted.
	open := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(3 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(l, "220")
	}
	held := 0
	for range 4 {
		if open() {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("%d sessions at once under a cap of 2", held)
	}
	g.setConf("sessionsperaddr", "3")
	cmd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the reload", func() bool { return strings.Count(logs.String(), "info: settings:") == 2 })
	for range 4 {
		if open() {
			held++
		}
	}
	if held != 3 {
		t.Errorf("%d sessions at once from one address after the cap became 3", held)
	}
}

// TestGatewayStopUnderLoad: SIGTERM while connections pour in ends
// gatewayd (the review found it spinning for ever when a connection came
// between the closing of the servers and that of the listener).
func TestGatewayStopUnderLoad(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("sessionsperaddr", "0") })
	for i := range 10 {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cmd := exec.Command(filepath.Join(bin, "im2000-gatewayd"), "-l", addr, "-t", "10", "-c", "1000")
		cmd.Env = append(append([]string{}, g.vars...), "IM2000_AGENT="+g.agent.spool)
		logs := &syncBuffer{}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		await(t, 5*time.Second, "gatewayd's settings", func() bool { return strings.Contains(logs.String(), "info: settings:") })
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						c.Close()
					}
				}
			}()
		}
		time.Sleep(150 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("round %d: gatewayd still ran 5 s after SIGTERM under a stream of connections", i)
		}
		stop.Store(true)
		wg.Wait()
		checkLog(t, "im2000-gatewayd", logs.String())
	}
}
