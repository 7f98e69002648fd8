package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
	"im2000/lib/wire/rnaqp"
)

// fedCA is the federation's private CA, as an admin of a private network
// runs one: its certificate in a PEM file every host trusts (host-setup.sh
// -A, the tlsca setting), and a certificate for each host's domain and
// public name, given to host-setup.sh with -c and -k.
type fedCA struct {
	t      *testing.T
	ca     *tlstest.CA
	dir    string
	file   string
	serial int64
}

func newFedCA(t *testing.T) *fedCA {
	f := &fedCA{t: t, ca: tlstest.NewCA(t), dir: t.TempDir()}
	f.file = filepath.Join(f.dir, "ca.pem")
	if err := os.WriteFile(f.file, f.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// opts makes the certificate chain and key of a host of domain named host
// (the names clients verify: the domain looked up, and the host) and
// returns host-setup.sh's options for them and the CA.
func (f *fedCA) opts(name, domain, host string) []string {
	f.serial++
	crt, key := filepath.Join(f.dir, name+"-fullchain.pem"), filepath.Join(f.dir, name+"-privkey.pem")
	f.ca.WriteLeaf(f.t, crt, key, f.serial, domain, host)
	return []string{"-c", crt, "-k", key, "-A", f.file}
}

// seenTLS reports whether the tlsseen directory (the default, tlsdomains)
// of the configuration conf of h (conf, or users/ACCOUNT) records service
// at domain as reached over verified TLS.
func seenTLS(h *fedHost, conf, service, domain string) bool {
	_, err := os.Stat(filepath.Join(h.dir, conf, "tlsdomains", service+"@"+domain))
	return err == nil
}

// checkSeenTLS: after mail went from each host of hosts to every other,
// each sender's notifyd reached each recipient's agent over verified TLS
// (RNASP, the _rnasps records), and each recipient's fetch loop reached
// each sender's store so (MSRAP, the _msraps records): both are
// remembered, so neither will take cleartext from that domain again.
func checkSeenTLS(t *testing.T, hosts map[string]*fedHost) {
	t.Helper()
	for from, fh := range hosts {
		for to, th := range hosts {
			if from == to {
				continue
			}
			if !seenTLS(fh, "conf", "rnasp", th.domain) {
				t.Errorf("%s's notifyd has no record of %s's agent reached over TLS (%s)", fh.domain, th.domain, seenLine(fh, "conf"))
			}
			if !seenTLS(th, filepath.Join("users", to), "msrap", fh.domain) {
				t.Errorf("%s@%s's fetch loop has no record of %s's store reached over TLS (%s)", to, th.domain, fh.domain, seenLine(th, filepath.Join("users", to)))
			}
		}
	}
}

// agentSpool is the notifications waiting in account's spool at h's agent
// (files named by their 32-hex-digit key: lib/agent Key).
func agentSpool(t *testing.T, h *fedHost, account string) []rnaqp.NotificationAndLocalData {
	t.Helper()
	var ns []rnaqp.NotificationAndLocalData
	files, _ := filepath.Glob(filepath.Join(h.dir, "agent", account, "*"))
	for _, f := range files {
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(filepath.Base(f)) {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue // taken meanwhile
		}
		var n rnaqp.NotificationAndLocalData
		if err := n.Unmarshal(data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ns = append(ns, n)
	}
	return ns
}

// checkStoreSSL: a notification from a's store, as b's agent keeps it for
// an account whose fetch loop does not run, names a.test in storessl
// beside storelocation (host-setup.sh set both, the certificate given);
// the account's reader, run once, then fetches it over TLS.
func checkStoreSSL(t *testing.T, a, b *fedHost, account string, fail func(string, ...any)) {
	t.Helper()
	a.send("alice", "storessl", account+"@"+b.domain)
	var ns []rnaqp.NotificationAndLocalData
	if !waitQuiet(30*time.Second, func() bool { ns = agentSpool(t, b, account); return len(ns) > 0 }) {
		fail("no notification reached %s's spool at %s", account, b.domain)
	}
	n := ns[0].Notification
	if n.StoreSSL == nil || n.StoreSSL.String() != a.domain || n.StoreClear.String() != a.domain {
		fail("the notification in %s's spool: storelocation %v, storessl %v; want %s for both", account, n.StoreClear, n.StoreSSL, a.domain)
	}
	if r := b.user(account, "", "im2000-fetch"); r.code != 0 || b.count(account, "storessl") != 1 {
		fail("im2000-fetch as %s: exit %d, %d delivered\n%s", account, r.code, b.count(account, "storessl"), r.stderr)
	}
	if !seenTLS(b, filepath.Join("users", account), "msrap", a.domain) {
		t.Errorf("%s fetched from %s without TLS (nothing in its tlsdomains)", account, a.domain)
	}
}

// checkDowngrade: b.test's TLS records leave the zone (an attacker
// stripping them from the answers looks the same): a's notifyd, which has
// reached b.test's agent over TLS, refuses the cleartext agent left
// (tlsdowngrade in the store's status, "TLS refused" in its log) and
// delivers nothing; with the records back, the message goes over TLS
// and is read (silenced, readall).
func checkDowngrade(t *testing.T, nsd *nsdServer, zones map[string]string, a, b *fedHost, fail func(string, ...any)) {
	t.Helper()
	began := time.Now()
	var clear []string
	for _, l := range strings.SplitAfter(zones[b.domain], "\n") {
		if !strings.Contains(l, "s._tcp.") {
			clear = append(clear, l)
		}
	}
	nsd.reload(b.domain, strings.Join(clear, ""))
	id := a.send("alice", "downgraded", "bob@"+b.domain)
	var st result
	if !waitQuiet(20*time.Second, func() bool {
		st = a.store("alice", "im2000-status", id)
		return strings.Contains(st.stdout, "bob@"+b.domain+"\ttlsdowngrade")
	}) {
		fail("status of a message to a domain whose TLS records went away:\n%s%s", st.stdout, st.stderr)
	}
	// The user's view, over MSOAP, has no such state: the nearest, noserver.
	if st = a.user("alice", "", "im2000-status", id); !strings.Contains(st.stdout, "bob@"+b.domain+"\tnoserver") {
		t.Errorf("alice's own status of the refused message:\n%s%s", st.stdout, st.stderr)
	}
	log, _ := os.ReadFile(filepath.Join(a.dir, "service", "im2000-notifyd", "log", "main", "current"))
	if !strings.Contains(string(log), "warning: TLS refused: "+b.domain+": ") {
		t.Errorf("%s's notifyd did not log the refused downgrade:\n%s", a.domain, log)
	}
	if b.count("bob", "downgraded") != 0 {
		fail("delivered in cleartext to a domain reached over TLS before")
	}
	nsd.reload(b.domain, zones[b.domain])
	if !waitQuiet(30*time.Second, func() bool { return b.count("bob", "downgraded") == 1 }) {
		fail("%q did not arrive once %s's TLS records were back", "downgraded", b.domain)
	}
	if st = a.store("alice", "im2000-status", id); !strings.Contains(st.stdout, "bob@"+b.domain+"\tsilenced\treadall") {
		t.Errorf("status once delivered:\n%s%s", st.stdout, st.stderr)
	}
	t.Logf("downgrade refused, then delivered over TLS, in %v (two nsd restarts)", time.Since(began).Round(time.Millisecond))
}

// store runs one of the programs with the servers' configuration (the
// store's own view, as the admin sees it) as account.
func (h *fedHost) store(account, prog string, args ...string) result {
	h.t.Helper()
	return h.run(filepath.Join(h.dir, "conf"), account, "", prog, args...)
}

// seenLine is what a failed check of the TLS records shows.
func seenLine(h *fedHost, conf string) string {
	entries, _ := os.ReadDir(filepath.Join(h.dir, conf, "tlsdomains"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return fmt.Sprintf("%s %s/tlsdomains: %v", h.domain, conf, names)
}
