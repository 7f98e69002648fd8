package tests

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSetupTLSAndLists: conf/setup.sh makes a private CA whose certificate
// for the domain, localhost and 127.0.0.1 verifies, runs every server with
// -tls, routes only the TLS forms, gives every account the CA as tlsca;
// and the first account may post to the list 'announce' with its own
// settings (im2000-inject looks in users/ACCOUNT/lists/), the second may
// not.
func TestSetupTLSAndLists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "im2000")
	if out, err := exec.Command("sh", "../conf/setup.sh", "-b", bin, dir, "alice", "bob").CombinedOutput(); err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	caPEM, _ := os.ReadFile(read("conf/tlsca"))
	certPEM, _ := os.ReadFile(read("conf/tlscert"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("conf/tlsca holds no certificate")
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("conf/tlscert holds no certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"example.org", "localhost", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: time.Now()}); err != nil {
			t.Errorf("the certificate for %s: %v", name, err)
		}
	}
	for _, svc := range []string{"im2000-submitd", "im2000-retrieved", "im2000-agentd", "im2000-queryd", "im2000-imapd-tls"} {
		if run := read("service/" + svc + "/run"); !strings.HasSuffix(run, " -tls") {
			t.Errorf("%s does not run with -tls: %s", svc, run)
		}
	}
	for _, svc := range []string{"im2000-imapd", "im2000-gatewayd"} { // STARTTLS
		if run := read("service/" + svc + "/run"); strings.Contains(run, " -tls") {
			t.Errorf("%s runs with -tls, not STARTTLS: %s", svc, run)
		}
	}
	for _, routes := range []string{"conf/routes", "users/alice/routes"} {
		for _, line := range strings.Split(read(routes), "\n") {
			if svc, _, _ := strings.Cut(line, "."); !strings.HasSuffix(svc, "s") {
				t.Errorf("%s routes a cleartext form: %s", routes, line)
			}
		}
	}
	for _, a := range []string{"alice", "bob"} {
		if read("users/"+a+"/tlsca") != read("conf/tlsca") || read("users/"+a+"/rna") != "example.org" {
			t.Errorf("%s's settings do not reach the agent by TLS", a)
		}
	}
	user := func(a string) *env {
		return &env{t: t, vars: []string{"IM2000_CONF=" + filepath.Join(dir, "users", a), "IM2000_ACCOUNT=" + a, "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}}
	}
	if r := user("alice").run("Subject: hi\n\nto the list\n", "im2000-inject", "-l", "announce"); r.code != 0 {
		t.Fatalf("alice may not post to announce: exit %d: %s", r.code, r.stderr)
	}
	if r := user("bob").run("Subject: hi\n\nto the list\n", "im2000-inject", "-l", "announce"); r.code != 100 || !strings.Contains(r.stderr, "not permitted") {
		t.Fatalf("bob posted to announce: exit %d: %s", r.code, r.stderr)
	}
}
