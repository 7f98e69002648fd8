package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// The mail clients that check a deployment made by conf/setup.sh or
// conf/host-setup.sh from outside, as a user's would: Python's smtplib at
// its SMTP gateway and imaplib at its IMAP server, both verifying the
// deployment's certificate with the CA it trusts.

// gatewaySend hands a message for rcpt to the SMTP gateway at addr
// (host:port) after STARTTLS verified with cafile, as an MX client from
// the SMTP world would; a recipient at another domain in the same
// transaction must be refused (550) and the message taken for rcpt alone.
func gatewaySend(t *testing.T, addr, cafile, rcpt, subject string) {
	t.Helper()
	const py = `import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("mx.sender.test")
assert s.has_extn("starttls"), s.esmtp_features
s.starttls(context=ctx)
s.ehlo("mx.sender.test")
msg = "From: someone@sender.test\r\nTo: %s\r\nSubject: %s\r\n\r\nover the gateway\r\n" % (sys.argv[3], sys.argv[4])
refused = s.sendmail("someone@sender.test", [sys.argv[3], "eve@elsewhere.test"], msg)
assert list(refused) == ["eve@elsewhere.test"] and refused["eve@elsewhere.test"][0] == 550, refused
try:
    s.sendmail("someone@sender.test", ["eve@elsewhere.test"], msg)
    raise SystemExit("another domain alone was taken")
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients["eve@elsewhere.test"][0] == 550, e.recipients
s.quit()
print("ok")
`
	out, err := exec.Command("/usr/bin/python3", "-c", py, addr, cafile, rcpt, subject).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok") {
		t.Fatalf("smtplib to the gateway at %s: %v\n%s", addr, err, out)
	}
}

// imapRead logs in to the IMAP server at addr (host:port) as user, over
// STARTTLS (mode "starttls") or TLS from the first byte ("implicit"),
// verifying the certificate with cafile, SELECTs INBOX, and waits up to
// 30 seconds (a poll of the agent every few seconds) for a message whose
// Subject is subject (found by fetching the Subject of each), whose whole
// text it fetches.
func imapRead(t *testing.T, addr, mode, cafile, user, password, subject string) {
	t.Helper()
	const py = `import imaplib, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
deadline = time.time() + 30
while True:
    if sys.argv[3] == "implicit":
        M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=20)
    else:
        M = imaplib.IMAP4(host, int(port), timeout=20)
        assert "STARTTLS" in M.capabilities, M.capabilities
        M.starttls(ssl_context=ctx)
    assert M.sock.version().startswith("TLSv1."), M.sock.version()
    M.login(sys.argv[4], sys.argv[5])
    typ, data = M.select("INBOX")
    assert typ == "OK", (typ, data)
    # The Subject of each message from its header (readheaders), as a
    # client lists a mailbox: imapd answers SEARCH by header only from
    # headers it already holds (im2000-imapd(8)).
    n = None
    typ, data = M.select("INBOX")
    if int(data[0]) > 0:
        typ, data = M.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", (typ, data)
        for item in data:
            if isinstance(item, tuple) and sys.argv[6].encode() in item[1]:
                n = item[0].split()[0].decode()
    if n:
        typ, data = M.fetch(n, "(BODY.PEEK[])")
        assert typ == "OK" and b"over the gateway" in data[0][1], data
        M.logout()
        print("ok")
        break
    M.logout()
    if time.time() > deadline:
        raise SystemExit("no message %r in INBOX after 30 s" % sys.argv[6])
    time.sleep(1)
`
	out, err := exec.Command("/usr/bin/python3", "-c", py, addr, cafile, mode, user, password, subject).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok") {
		t.Fatalf("imaplib %s at %s as %s: %v\n%s", mode, addr, user, err, out)
	}
}
