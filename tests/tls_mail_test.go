package tests

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capture runs tcpdump on lo for the given ports until the function it
// returns is called, which returns the raw capture file.
func capture(t *testing.T, ports ...string) func() []byte {
	t.Helper()
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatal("tcpdump is not installed: run tests/deps.sh")
	}
	file := filepath.Join(t.TempDir(), "lo.pcap")
	var filter []string
	for i, p := range ports {
		if i > 0 {
			filter = append(filter, "or")
		}
		filter = append(filter, "tcp", "port", p)
	}
	// -Z root: Debian's tcpdump would otherwise open the file as the
	// tcpdump user, in a directory only root may write.
	cmd := exec.Command(tcpdump, append([]string{"-i", "lo", "--immediate-mode", "-U", "-s", "0", "-Z", "root", "-w", file}, filter...)...)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() []byte {
		if !stopped {
			stopped = true
			time.Sleep(500 * time.Millisecond) // the last packets reach tcpdump
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("tcpdump wrote nothing: %v\n%s", err, logs.String())
		}
		return b
	}
	t.Cleanup(func() { stop() })
	await(t, 10*time.Second, "tcpdump listening", func() bool { return strings.Contains(logs.String(), "listening on") })
	return stop
}

// leaks says which of secrets the capture holds.
func leaks(capture []byte, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if bytes.Contains(capture, []byte(s)) {
			found = append(found, s)
		}
	}
	return found
}

// TestTLSSMTP: swaks submits with STARTTLS (--tls) to an smtpd with a
// certificate, and with implicit TLS (--tlsc) to one run with -tls, under
// tcpserver and listening, verifying the certificate against the private
// CA. A capture on lo of a cleartext submission (loopback may) shows its
// password and body, which proves the capture sees the traffic; one of a
// STARTTLS submission shows neither.
func TestTLSSMTP(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	e := newEnv(t, "alice")
	writePasswords(t, e, "alice", "bob")
	withTLS(t, e)
	ca := filepath.Join(e.conf, "testca.pem")
	starttls, implicit, listener := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	smtpd := filepath.Join(bin, "im2000-smtpd")
	daemonEnv(t, e.vars, "127.0.0.1:"+starttls, tcpserver, "-RHl0", "127.0.0.1", starttls, smtpd, "-t", "10")
	daemonEnv(t, e.vars, "127.0.0.1:"+implicit, tcpserver, "-RHl0", "127.0.0.1", implicit, smtpd, "-t", "10", "-tls")
	daemonEnv(t, e.vars, "127.0.0.1:"+listener, smtpd, "-l", "127.0.0.1:"+listener, "-t", "10", "-tls")
	swaks := func(port, user string, args ...string) string {
		t.Helper()
		out, err := exec.Command("swaks", append([]string{"--server", "127.0.0.1", "--port", port,
			"--auth", "PLAIN", "--auth-user", user, "--auth-password", user + "pw", "--to", "carol@example.net", "--from", user + "@example.org",
			"--tls-verify", "--tls-ca-path", ca}, args...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "250 2.0.0 OK: stored in your archive as ") {
			t.Fatalf("swaks %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	stop := capture(t, starttls)
	swaks(starttls, "bob", "--body", "CONTROL-BODY-in-clear")
	out := swaks(starttls, "alice", "--tls", "--body", "SECRET-BODY-over-starttls")
	raw := stop()
	if !strings.Contains(out, "STARTTLS") || !strings.Contains(out, "TLS started") {
		t.Errorf("swaks --tls did not start TLS:\n%s", out)
	}
	plainAuth := func(user string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + user + "pw"))
	}
	if got := leaks(raw, "CONTROL-BODY-in-clear", plainAuth("bob")); len(got) != 2 {
		t.Fatalf("the capture (%d bytes) does not show the cleartext submission (%q): it proves nothing", len(raw), got)
	}
	if got := leaks(raw, "SECRET-BODY-over-starttls", plainAuth("alice"), "alicepw"); len(got) > 0 {
		t.Fatalf("the STARTTLS submission leaked %q", got)
	}
	for _, port := range []string{implicit, listener} {
		if out := swaks(port, "alice", "--tlsc", "--body", "over implicit TLS"); !strings.Contains(out, "TLS started") {
			t.Errorf("swaks --tlsc on %s:\n%s", port, out)
		}
	}
	if n := len(archived(t, e)); n != 3 {
		t.Errorf("alice's archive has %d messages, want 3", n)
	}
}

// TestTLSPOP3: poplib logs in after stls() (CAPA lists STLS before TLS, not
// after) and with POP3_SSL against pop3d run with -tls, verifying the
// certificate, and reads a message. A capture on lo of the POP3 ports
// holds the cleartext greeting (so it saw the sessions) but neither the
// password nor the message body. (pop3d's own RNAQP leg to the agent is
// the client side of issue 16, and not on these ports.)
func TestTLSPOP3(t *testing.T) {
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	time.Sleep(300 * time.Millisecond)
	id := h.inject("Subject: over TLS\n\nSECRET-BODY-over-pop3s\n", "bob@example.net")
	await(t, 5*time.Second, "bob notified", func() bool {
		return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread"
	})

	pe := newEnv(t, "bob")
	pe.setConf("rna", bobAgent.rnaqp)
	pe.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	pe.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n")
	withTLS(t, pe)
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	plain, implicit := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	daemonEnv(t, pe.vars, "127.0.0.1:"+plain, tcpserver, "-RHl0", "127.0.0.1", plain, filepath.Join(bin, "im2000-pop3d"))
	_, logs := daemonEnv(t, pe.vars, "127.0.0.1:"+implicit, filepath.Join(bin, "im2000-pop3d"), "-l", "127.0.0.1:"+implicit, "-tls")

	py := `import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
p = poplib.POP3("127.0.0.1", int(sys.argv[2]), timeout=10)
before = p.capa()
p.stls(context=ctx)
after = p.capa()
p.user("bob"); p.pass_("bobpw")
msg = b"\n".join(p.retr(1)[1])
p.quit()
q = poplib.POP3_SSL("127.0.0.1", int(sys.argv[3]), context=ctx, timeout=10)
q.user("bob"); q.pass_("bobpw")
n, _ = q.stat()
again = b"\n".join(q.retr(1)[1])
q.quit()
print("STLS" in before, "STLS" in after, "USER" in after, b"SECRET-BODY-over-pop3s" in msg, n, b"SECRET-BODY-over-pop3s" in again)
`
	stop := capture(t, plain, implicit)
	out, err := exec.Command("/usr/bin/python3", "-c", py, filepath.Join(pe.conf, "testca.pem"), plain, implicit).CombinedOutput()
	raw := stop()
	if err != nil || strings.TrimSpace(string(out)) != "True False True True 1 True" {
		t.Fatalf("poplib: %v\n%s\npop3d -tls log:\n%s", err, out, logs.String())
	}
	// mpop (GnuTLS) with STARTTLS and with TLS from the first byte,
	// verifying the certificate.
	mpop, err := exec.LookPath("mpop")
	if err != nil {
		t.Fatal("mpop is not installed: run tests/deps.sh")
	}
	dir := t.TempDir()
	rc := filepath.Join(dir, "mpoprc")
	os.WriteFile(rc, nil, 0o600)
	for _, m := range []struct{ port, starttls string }{{plain, "on"}, {implicit, "off"}} {
		mbox := filepath.Join(dir, "mbox"+m.port)
		os.WriteFile(mbox, nil, 0o600)
		cmd := exec.Command(mpop, "-C", rc, "--host=127.0.0.1", "--port="+m.port, "--tls=on", "--tls-starttls="+m.starttls,
			"--tls-trust-file="+filepath.Join(pe.conf, "testca.pem"), "--auth=user", "--user=bob", "--passwordeval=echo bobpw",
			"--only-new=off", "--keep=on", "--uidls-file="+filepath.Join(dir, "uidls"+m.port), "--delivery=mbox,"+mbox)
		cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(mbox)
		if err != nil || !bytes.Contains(got, []byte("SECRET-BODY-over-pop3s")) {
			t.Fatalf("mpop --tls-starttls=%s: %v\n%s\nmbox: %q", m.starttls, err, out, got)
		}
	}
	if got := leaks(raw, "+OK im2000-pop3d ready", "begin TLS negotiation"); len(got) != 2 {
		t.Fatalf("the capture (%d bytes) does not show the cleartext part of the STLS session (%q): it proves nothing", len(raw), got)
	}
	if got := leaks(raw, "bobpw", "SECRET-BODY-over-pop3s", "PASS "); len(got) > 0 {
		t.Fatalf("the TLS sessions leaked %q", got)
	}
}
