package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
)

// leafSerial numbers the leaves a test run makes.
var leafSerial atomic.Int64

// useCA gives e a certificate for names (and 127.0.0.1) from ca as its
// tlscert and tlskey, and trusts ca as its tlsca: the private deployment
// conf/setup.sh makes.
func useCA(t *testing.T, e *env, ca *tlstest.CA, names ...string) {
	t.Helper()
	ca.WriteLeaf(t, filepath.Join(e.conf, "tls.crt"), filepath.Join(e.conf, "tls.key"), 100+leafSerial.Add(1), append(names, "127.0.0.1")...)
	e.setConf("tlscert", "tls.crt")
	e.setConf("tlskey", "tls.key")
	trustCA(t, e, ca)
}

// trustCA makes ca e's tlsca.
func trustCA(t *testing.T, e *env, ca *tlstest.CA) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.conf, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	e.setConf("tlsca", "ca.pem")
}

// writeExpiredLeaf writes a certificate for names from ca that expired an
// hour ago, and its key, as e's tlscert and tlskey.
func writeExpiredLeaf(t *testing.T, e *env, ca *tlstest.CA, names ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(900 + leafSerial.Add(1)), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour), DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(e.conf, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(e.conf, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	e.setConf("tlscert", "tls.crt")
	e.setConf("tlskey", "tls.key")
}

// tlsAgentHost is an agent for domain whose agentd and queryd listen with
// -tls only (no cleartext port), with a certificate from setup.
func tlsAgentHost(t *testing.T, domain string, setup func(e *env), accounts ...string) *agentHost {
	t.Helper()
	e := newEnv(t, accounts[0])
	e.setConf("me", domain)
	writePasswords(t, e, accounts...)
	setup(e)
	h := &agentHost{env: e, spool: filepath.Join(t.TempDir(), "agent"), mode: "listener"}
	os.Mkdir(h.spool, 0o755)
	for _, a := range accounts {
		os.Mkdir(filepath.Join(h.spool, a), 0o700)
	}
	e.vars = append(e.vars, "IM2000_AGENT="+h.spool)
	for i, prog := range []string{"im2000-agentd", "im2000-queryd"} {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		h.procs[i], _ = daemonEnv(t, e.vars, addr, filepath.Join(bin, prog), "-l", addr, "-tls")
		if i == 0 {
			h.rnasp = addr
		} else {
			h.rnaqp = addr
		}
	}
	return h
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// tlsFlow is alice's store (example.org) and bob's agent (example.net),
// every server with -tls alone, one private CA, and notifyd sending
// storessl.
type tlsFlow struct {
	ca        *tlstest.CA
	store     *storeHost
	agent     *agentHost
	notifyd   *exec.Cmd
	notifyLog *syncBuffer
	cleartext string // storelocation
}

func newTLSFlow(t *testing.T, storeSetup func(e *env, f *tlsFlow)) *tlsFlow {
	f := &tlsFlow{ca: tlstest.NewCA(t)}
	f.agent = tlsAgentHost(t, "example.net", func(e *env) { useCA(t, e, f.ca, "example.net") }, "bob")
	f.store = newStoreHost(t, "listener", func(e *env) {
		useCA(t, e, f.ca, "example.org")
		e.setConf("routes", "_rnasps._tcp.example.net "+f.agent.rnasp+"\n")
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "1")
		if storeSetup != nil {
			storeSetup(e, f)
		}
	}, "-tls")
	// storelocation is a cleartext address nothing listens on: every
	// retrieval must take storessl.
	f.cleartext = "127.0.0.1:" + strconv.Itoa(freePort(t))
	f.store.setConf("storelocation", f.cleartext)
	f.store.setConf("storessl", f.store.msrap)
	f.notifyd, f.notifyLog = daemonEnv(t, f.store.vars, "", filepath.Join(bin, "im2000-notifyd"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifyd:\n%s", f.notifyLog.String())
		}
	})
	time.Sleep(300 * time.Millisecond) // the trigger FIFO
	return f
}

// sender is alice's remote configuration: her store found by the TLS form
// of example.org's MSOAP.
func (f *tlsFlow) sender(t *testing.T) *env {
	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", "example.org")
	cl.setConf("routes", "_msoaps._tcp.example.org "+f.store.msoap+"\n")
	cl.setConf("password", "alicepw")
	cl.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
	trustCA(t, cl, f.ca)
	return cl
}

// reader is bob's fetch configuration: his agent and alice's store by
// their TLS forms.
func (f *tlsFlow) reader(t *testing.T) (*env, string) {
	be, maildir := fetchEnv(t, "bob", f.agent)
	be.setConf("rna", "example.net")
	be.setConf("routes", "_rnaqps._tcp.example.net "+f.agent.rnaqp+"\n_msraps._tcp.example.org "+f.store.msrap+"\n_msrap._tcp.example.org "+f.cleartext+"\n")
	trustCA(t, be, f.ca)
	return be, maildir
}

// TestTLSClientFlow: the whole flow with no cleartext port anywhere and a
// private CA: alice's remote inject finds her store by _msoaps._tcp,
// notifyd reaches bob's agent by _rnasps._tcp and sends storessl, bob's
// fetch reaches his agent by _rnaqps._tcp and alice's store at storessl
// (verified for example.org, the sender's domain), silences, and status
// (local and remote) shows it. A capture on lo of every port holds the
// names the clients asked for (the SNI: it saw the sessions) but neither
// password nor body. Each client remembers the domains it reached over TLS;
// so a later notification from example.org without storessl is refused by
// bob's fetch as a downgrade.
func TestTLSClientFlow(t *testing.T) {
	f := newTLSFlow(t, nil)
	cl := f.sender(t)
	be, maildir := f.reader(t)
	stop := capture(t, port(f.store.msoap), port(f.store.msrap), port(f.agent.rnasp), port(f.agent.rnaqp))

	id := cl.inject("From: alice@example.org\nSubject: sealed\n\nSECRET-BODY-end-to-end-TLS\n", "bob@example.net")
	states := func() map[string]string { return recipientStates(t, f.store.store, "alice", id) }
	await(t, 10*time.Second, "bob notified over TLS", func() bool { return states()["bob@example.net"] == "notifying/unread" })
	if r := be.run("", "im2000-fetch", "-d", maildir); r.code != 0 {
		t.Fatalf("bob's fetch: exit %d: %s", r.code, r.stderr)
	}
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "SECRET-BODY-end-to-end-TLS") || !strings.Contains(msgs[0], "Return-Path: <alice@example.org>") {
		t.Fatalf("bob's Maildir: %q", msgs)
	}
	if s := states()["bob@example.net"]; s != "silenced/readall" {
		t.Fatalf("bob after fetching: %s", s)
	}
	if r := f.store.run("", "im2000-status", id); !strings.Contains(r.stdout, "bob@example.net\tsilenced\treadall") {
		t.Fatalf("status: %q %s", r.stdout, r.stderr)
	}
	if r := cl.run("", "im2000-status", id); r.code != 0 || !strings.Contains(r.stdout, "bob@example.net\tsilenced") {
		t.Fatalf("remote status: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	raw := stop()
	if got := leaks(raw, "example.org", "example.net"); len(got) != 2 {
		t.Fatalf("the capture (%d bytes) does not show the TLS sessions' server names (%q): it proves nothing", len(raw), got)
	}
	if got := leaks(raw, "alicepw", "bobpw", "SECRET-BODY-end-to-end-TLS", "sealed"); len(got) > 0 {
		t.Fatalf("the TLS sessions leaked %q", got)
	}
	for _, seen := range []string{
		filepath.Join(f.store.conf, "tlsdomains", "rnasp@example.net"),
		filepath.Join(be.conf, "tlsdomains", "rnaqp@example.net"),
		filepath.Join(be.conf, "tlsdomains", "msrap@example.org"),
		filepath.Join(cl.conf, "tlsdomains", "msoap@example.org"),
	} {
		if _, err := os.Stat(seen); err != nil {
			t.Errorf("not remembered as reached over TLS: %v", err)
		}
	}
	// notifyd stops sending storessl (an attacker's store would not): the
	// reader, having reached example.org's store over TLS, refuses.
	os.Remove(filepath.Join(f.store.conf, "storessl"))
	f.notifyd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "notifyd re-read its settings", func() bool {
		return strings.Contains(f.notifyLog.String(), "im2000-notifyd: info: SIGHUP: storessl changed")
	})
	id2 := f.store.inject("Subject: two\n\nsecond\n", "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool {
		return recipientStates(t, f.store.store, "alice", id2)["bob@example.net"] == "notifying/unread"
	})
	r := be.run("", "im2000-fetch", "-d", maildir)
	if !strings.Contains(r.stderr, "TLS downgrade refused") || len(maildirMessages(t, maildir)) != 1 {
		t.Fatalf("fetch of a cleartext-only store known for TLS: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("fetch: exit %d: %s", r.code, r.stderr)
}

// TestTLSClientDowngrade: notifyd refuses, each with its own state that
// im2000-status shows: a domain in tlsrequire offering only cleartext
// (tlsdowngrade); agents whose certificate is of another CA or expired
// (tlsbadcert), though they offer cleartext too; and bob's domain, reached
// over TLS once, then offering only cleartext (tlsdowngrade) — the
// cleartext agents get nothing.
func TestTLSClientDowngrade(t *testing.T) {
	other := tlstest.NewCA(t)
	clear := map[string]*agentHost{}
	for _, d := range []string{"example.net", "example.com", "example.edu", "example.info"} {
		clear[d] = newAgentHostFor(t, "listener", d, "", "bob")
	}
	var wrongCA, expired *agentHost
	f := newTLSFlow(t, func(e *env, f *tlsFlow) {
		e.setConf("tlsrequire", "example.com")
		wrongCA = tlsAgentHost(t, "example.edu", func(a *env) { useCA(t, a, other, "example.edu") }, "bob")
		expired = tlsAgentHost(t, "example.info", func(a *env) { writeExpiredLeaf(t, a, f.ca, "example.info") }, "bob")
		e.setConf("routes", strings.Join([]string{
			"_rnasps._tcp.example.net " + f.agent.rnasp,
			"_rnasp._tcp.example.com " + clear["example.com"].rnasp,
			"_rnasps._tcp.example.edu " + wrongCA.rnasp, "_rnasp._tcp.example.edu " + clear["example.edu"].rnasp,
			"_rnasps._tcp.example.info " + expired.rnasp, "_rnasp._tcp.example.info " + clear["example.info"].rnasp,
		}, "\n")+"\n")
	})
	id := f.store.inject("Subject: one\n\nfirst\n", "bob@example.net", "bob@example.com", "bob@example.edu", "bob@example.info")
	states := func(id string) map[string]string { return recipientStates(t, f.store.store, "alice", id) }
	await(t, 15*time.Second, "each domain's outcome", func() bool {
		s := states(id)
		return s["bob@example.net"] == "notifying/unread" && s["bob@example.com"] == "tlsdowngrade/unread" &&
			s["bob@example.edu"] == "tlsbadcert/unread" && s["bob@example.info"] == "tlsbadcert/unread"
	})
	r := f.store.run("", "im2000-status", id)
	for _, want := range []string{"bob@example.com\ttlsdowngrade", "bob@example.edu\ttlsbadcert", "bob@example.info\ttlsbadcert"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}

	// example.net now offers only cleartext (an attacker stripped the TLS
	// form): refused, though it was never in tlsrequire.
	routes, _ := os.ReadFile(filepath.Join(f.store.conf, "routes"))
	f.store.setConf("routes", strings.Replace(string(routes), "_rnasps._tcp.example.net "+f.agent.rnasp, "_rnasp._tcp.example.net "+clear["example.net"].rnasp, 1))
	f.notifyd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "notifyd re-read its settings", func() bool {
		return strings.Contains(f.notifyLog.String(), "im2000-notifyd: info: SIGHUP: routes changed")
	})
	id2 := f.store.inject("Subject: two\n\nsecond\n", "bob@example.net")
	await(t, 15*time.Second, "the downgrade refused", func() bool { return states(id2)["bob@example.net"] == "tlsdowngrade/unread" })
	if r := f.store.run("", "im2000-status", id2); !strings.Contains(r.stdout, "bob@example.net\ttlsdowngrade") {
		t.Errorf("status of the downgraded message:\n%s", r.stdout)
	}
	for d, a := range clear {
		if ents, _ := os.ReadDir(filepath.Join(a.spool, "bob")); len(ents) > 0 {
			t.Errorf("the cleartext agent of %s got %d notifications", d, len(ents))
		}
	}
}
