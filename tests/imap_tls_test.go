package tests

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIMAPTLS: Python's imaplib reads over implicit TLS (-tls, port 993
// style) and over STARTTLS, verifying the server against the private CA.
func TestIMAPTLS(t *testing.T) {
	d := newIMAPDeploymentWith(t, func(e *env) { withTLS(t, e) }, "Subject: over tls\n\nsecret\n")
	implicit, _, _ := d.listen(t, "-tls")
	starttls, _, _ := d.listen(t)
	script := imapHelpers + `
import ssl
ctx = ssl.create_default_context(cafile=sys.argv[2])
host, port = sys.argv[1].rsplit(":", 1)
if sys.argv[3] == "implicit":
    M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
else:
    M = imaplib.IMAP4(host, int(port))
    assert "STARTTLS" in M.capabilities, M.capabilities
    M.starttls(ssl_context=ctx)
    assert "STARTTLS" not in M.capabilities, M.capabilities
assert M.sock.version().startswith("TLSv1."), M.sock.version()
M.login("bob", "bobpw")
typ, data = M.select("INBOX")
assert data == [b"1"], data
got = fetch(M, "1", "(BODY.PEEK[])")
assert any(b"secret" in p for f, p in got.values()), got
M.logout()
print("ok", M.sock.version() if hasattr(M.sock, "version") else "")
`
	for _, c := range [][2]string{{implicit, "implicit"}, {starttls, "starttls"}} {
		out, err := exec.Command("/usr/bin/python3", "-c", script, c[0], filepath.Join(d.env.conf, "testca.pem"), c[1]).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ok") {
			t.Fatalf("imaplib over %s: %v\n%s", c[1], err, out)
		}
	}
}

// TestIMAPLoginDisabled: from a non-loopback address (TCPREMOTEIP, as
// tcpserver sets it) before TLS, the capabilities say LOGINDISABLED and
// STARTTLS, and LOGIN is refused with PRIVACYREQUIRED, the password
// never checked.
func TestIMAPLoginDisabled(t *testing.T) {
	e := newEnv(t, "bob")
	withTLS(t, e)
	e.setConf("rna", "127.0.0.1:1") // never asked
	e.setConf("imapstate", filepath.Join(t.TempDir(), "imap"))
	cmd := exec.Command(filepath.Join(bin, "im2000-imapd"))
	cmd.Env = append(e.vars, "TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=5555")
	cmd.Stdin = strings.NewReader("a CAPABILITY\r\nb LOGIN bob bobpw\r\nc AUTHENTICATE PLAIN AGJvYgBib2Jwdw==\r\nd LOGOUT\r\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("im2000-imapd: %v\n%s", err, stderr.String())
	}
	var caps, login, auth string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		switch l := sc.Text(); {
		case strings.HasPrefix(l, "* CAPABILITY"):
			caps = l
		case strings.HasPrefix(l, "b "):
			login = l
		case strings.HasPrefix(l, "c "):
			auth = l
		}
	}
	if !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("capabilities before TLS from 192.0.2.7: %q", caps)
	}
	for _, l := range []string{login, auth} {
		if !strings.HasPrefix(l[2:], "NO [PRIVACYREQUIRED]") {
			t.Errorf("a password in cleartext from 192.0.2.7: %q\n%s", l, out)
		}
	}
	_ = time.Second
}
