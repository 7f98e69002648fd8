package tests

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTLSClientShims: the shims' own legs use the TLS client too. mutt
// sends with smtp_url=smtps:// to im2000-smtpd -tls, whose store is
// remote: smtpd reaches it by _msoaps._tcp (alice's password and the
// message go over TLS twice). fetchmail (ssl, sslcertck) and mpop read
// bob's mail from im2000-pop3d -tls, which checks bob's password with his
// agent by _rnaqps._tcp and retrieves at storessl. No server has a
// cleartext port; a capture on lo of every port shows the server names
// the shims asked for, and neither password nor body.
func TestTLSClientShims(t *testing.T) {
	for _, tool := range []string{"mutt", "fetchmail", "mpop"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run tests/deps.sh", tool)
		}
	}
	f := newTLSFlow(t, nil)
	home := t.TempDir()
	ca := filepath.Join(home, "ca.pem")
	os.WriteFile(ca, f.ca.PEM, 0o644)

	// smtpd for alice's remote store.
	se := f.sender(t)
	useCA(t, se, f.ca, "localhost")
	smtps := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, smtpLog := daemonEnv(t, se.vars, smtps, filepath.Join(bin, "im2000-smtpd"), "-l", smtps, "-tls")

	// pop3d for bob.
	pe, _ := f.reader(t)
	useCA(t, pe, f.ca, "localhost")
	trustCA(t, pe, f.ca)
	pe.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	pop3s := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, popLog := daemonEnv(t, pe.vars, pop3s, filepath.Join(bin, "im2000-pop3d"), "-l", pop3s, "-tls")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("smtpd:\n%s\npop3d:\n%s", smtpLog.String(), popLog.String())
		}
	})

	stop := capture(t, port(smtps), port(pop3s), port(f.store.msoap), port(f.store.msrap), port(f.agent.rnasp), port(f.agent.rnaqp))

	// mutt, without a terminal: -s and the body on stdin.
	muttrc := filepath.Join(home, "muttrc")
	os.WriteFile(muttrc, []byte(fmt.Sprintf(`set from="alice@example.org"
set smtp_url="smtps://alice@%s/"
set smtp_pass="alicepw"
set ssl_ca_certificates_file="%s"
set ssl_verify_dates=yes
set ssl_verify_host=yes
set copy=no
set record=""
`, smtps, ca)), 0o600)
	mutt := exec.Command("mutt", "-n", "-F", muttrc, "-s", "over smtps", "bob@example.net")
	mutt.Stdin = strings.NewReader("SECRET-BODY-through-the-shims\n")
	mutt.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TERM=dumb"}
	if out, err := mutt.CombinedOutput(); err != nil {
		t.Fatalf("mutt smtps: %v\n%s", err, out)
	}
	envs := archived(t, f.store.env)
	if len(envs) != 1 || envs[0].Sender.String() != "alice@example.org" {
		t.Fatalf("alice's archive after mutt: %d messages", len(envs))
	}
	await(t, 10*time.Second, "bob notified", func() bool {
		for _, s := range allStates(t, f.store) {
			if s == "notifying/unread" {
				return true
			}
		}
		return false
	})

	// fetchmail over POP3S, verifying the certificate; it keeps the
	// message, for mpop to read it too.
	out := filepath.Join(home, "fetched")
	os.Mkdir(out, 0o700)
	fmrc := filepath.Join(home, "fetchmailrc")
	os.WriteFile(fmrc, []byte(fmt.Sprintf(`poll 127.0.0.1 service %s protocol POP3
  user bob password bobpw is bob here
  keep
  ssl sslcertck sslcertfile %s sslcommonname localhost
  mda "/bin/sh -c 'cat > %s/msg'"
`, port(pop3s), ca, out)), 0o600)
	fm := exec.Command("fetchmail", "-f", fmrc, "--nosyslog", "-v")
	fm.Env = []string{"HOME=" + home, "FETCHMAILHOME=" + home, "PATH=" + os.Getenv("PATH")}
	if o, err := fm.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, o)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "msg")); !strings.Contains(string(got), "SECRET-BODY-through-the-shims") {
		t.Fatalf("fetchmail delivered %q", got)
	}
	mbox := filepath.Join(home, "mbox")
	os.WriteFile(mbox, nil, 0o600)
	rc := filepath.Join(home, "mpoprc")
	os.WriteFile(rc, nil, 0o600)
	mp := exec.Command("mpop", "-C", rc, "--host=127.0.0.1", "--port="+port(pop3s), "--tls=on", "--tls-starttls=off",
		"--tls-trust-file="+ca, "--auth=user", "--user=bob", "--passwordeval=echo bobpw",
		"--only-new=off", "--keep=on", "--uidls-file="+filepath.Join(home, "uidls"), "--delivery=mbox,"+mbox)
	mp.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	if o, err := mp.CombinedOutput(); err != nil {
		t.Fatalf("mpop: %v\n%s", err, o)
	}
	if got, _ := os.ReadFile(mbox); !strings.Contains(string(got), "SECRET-BODY-through-the-shims") {
		t.Fatalf("mpop delivered %q", got)
	}

	raw := stop()
	if got := leaks(raw, "example.org", "example.net"); len(got) != 2 {
		t.Fatalf("the capture (%d bytes) does not show the shims' TLS legs (%q): it proves nothing", len(raw), got)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))
	if got := leaks(raw, "alicepw", "bobpw", plain, "SECRET-BODY-through-the-shims", "over smtps"); len(got) > 0 {
		t.Fatalf("the TLS sessions leaked %q", got)
	}
	for _, seen := range []string{
		filepath.Join(se.conf, "tlsdomains", "msoap@example.org"),
		filepath.Join(pe.conf, "tlsdomains", "rnaqp@example.net"),
		filepath.Join(pe.conf, "tlsdomains", "msrap@example.org"),
	} {
		if _, err := os.Stat(seen); err != nil {
			t.Errorf("a shim's leg not over TLS: %v", err)
		}
	}
}

// allStates is every recipient state of every message of alice's.
func allStates(t *testing.T, h *storeHost) []string {
	var out []string
	for _, e := range archived(t, h.env) {
		for _, s := range recipientStates(t, h.store, "alice", e.ID.String()) {
			out = append(out, s)
		}
	}
	return out
}
