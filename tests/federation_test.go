package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fedHost is one deployment made by conf/host-setup.sh, run in a
// namespace under svscan.
type fedHost struct {
	t         *testing.T
	ns, dir   string
	domain    string
	zone      string
	passwords map[string]string
}

// hostSetup runs conf/host-setup.sh and adds the accounts with
// conf/add-account.sh; settings are written to the servers' and every
// account's configuration (seconds instead of the defaults' minutes).
func hostSetup(t *testing.T, ns, dir string, settings map[string]string, opts, args []string, accounts ...string) *fedHost {
	t.Helper()
	cmd := append(append(append([]string{"../conf/host-setup.sh", "-b", bin}, opts...), dir), args...)
	out, err := exec.Command("sh", cmd...).CombinedOutput()
	if err != nil {
		t.Fatalf("host-setup.sh %v: %v\n%s", args, err, out)
	}
	h := &fedHost{t: t, ns: ns, dir: dir, passwords: map[string]string{}}
	zone, err := os.ReadFile(filepath.Join(dir, "zone"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, zone) {
		t.Fatalf("host-setup.sh did not print the zone it wrote:\n%s", out)
	}
	h.zone = string(zone)
	me, _ := os.ReadFile(filepath.Join(dir, "conf", "me"))
	h.domain = strings.TrimSpace(string(me))
	for _, a := range accounts {
		// -C 4: the least bcrypt cost, as the fetch loops log in every second
		out, err := exec.Command("sh", "../conf/add-account.sh", "-C", "4", dir, a).CombinedOutput()
		f := strings.Fields(string(out))
		if err != nil || len(f) != 2 || f[0] != a+"@"+h.domain {
			t.Fatalf("add-account.sh %s: %v\n%s", a, err, out)
		}
		h.passwords[a] = f[1]
	}
	confs, _ := filepath.Glob(filepath.Join(dir, "users", "*"))
	for _, c := range append(confs, filepath.Join(dir, "conf")) {
		for k, v := range settings {
			if err := os.WriteFile(filepath.Join(c, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h
}

// start runs the host's services under svscan in its namespace; the
// cleanup takes every service down and ends svscan's process group.
func (h *fedHost) start() {
	svc := filepath.Join(h.dir, "service")
	scan := exec.Command("ip", "netns", "exec", h.ns, "svscan", svc)
	scan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := scan.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		services, _ := filepath.Glob(filepath.Join(svc, "*"))
		for _, s := range services {
			exec.Command("svc", "-dx", s, s+"/log").Run()
		}
		syscall.Kill(-scan.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { scan.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-scan.Process.Pid, syscall.SIGKILL)
		<-done
		for _, s := range services { // what outlived its supervise
			for _, p := range []string{s, s + "/log"} {
				if pid := supervisedPid(h.t, p); pid != 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
}

// user runs one of an account's programs in the host's namespace, with
// the account's own configuration.
func (h *fedHost) user(account, stdin, prog string, args ...string) result {
	h.t.Helper()
	return h.run(filepath.Join(h.dir, "users", account), account, stdin, prog, args...)
}

// run runs prog in the host's namespace with the configuration u.
func (h *fedHost) run(u, account, stdin, prog string, args ...string) result {
	h.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, "env", "-i", "IM2000_CONF=" + u,
		"IM2000_ACCOUNT=" + account, "HOME=" + u, "PATH=" + os.Getenv("PATH"), "TZ=UTC", filepath.Join(bin, prog)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		h.t.Fatalf("%s: %v", prog, err)
	}
	checkLog(h.t, prog, errb.String())
	return result{code, out.String(), errb.String()}
}

func (h *fedHost) send(from, subject string, to ...string) string {
	h.t.Helper()
	r := h.user(from, fmt.Sprintf("Subject: %s\n\nbody of %s\n", subject, subject), "im2000-inject", to...)
	if r.code != 0 {
		h.t.Fatalf("%s@%s sending %q: exit %d: %s", from, h.domain, subject, r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// count is how many messages with subject are in the account's Maildir.
func (h *fedHost) count(account, subject string) int {
	n := 0
	for _, m := range maildirMessages(h.t, filepath.Join(h.dir, "mail", account)) {
		if strings.Contains(m, "\nSubject: "+subject+"\n") || strings.HasPrefix(m, "Subject: "+subject+"\n") {
			n++
		}
	}
	return n
}

// logs is every service log of the host, for a failure's report.
func (h *fedHost) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(h.dir, "service", "*", "log", "main", "current"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if len(bytes.TrimSpace(data)) > 0 {
			fmt.Fprintf(&b, "== %s\n%s", strings.TrimPrefix(f, h.dir+"/service/"), data)
		}
	}
	return b.String()
}

// TestFederation is three mail domains on three hosts, each a deployment
// made by conf/host-setup.sh in its own network namespace, run by svscan,
// with accounts from conf/add-account.sh and their fetch loops; a real
// authoritative DNS server (nsd) serves exactly the records host-setup.sh
// printed, and nothing else tells a host where another is: no routes
// files. Every host has a certificate for its domain from a private CA
// that every host trusts (-c, -k, -A), so the TLS forms are published and
// tried first. Mail goes between every pair and to all three at once, over
// TLS (every host remembers the others' agents and stores as reached over
// verified TLS), and notifications name the store's TLS form (storessl);
// a host is cut off the network and put back (its mail arrives once); the
// DNS server stops and starts again; the agent of one domain goes down and
// the second agent its SRV records name takes the mail; a domain whose TLS
// records go away is refused as a downgrade until they are back; and a
// domain without IM2000 records is a temporary noservice, not baddomain.
func TestFederation(t *testing.T) {
	for _, p := range []string{"svscan", "svc", "svstat"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s (daemontools) is not installed: run tests/deps.sh", p)
		}
	}
	began := time.Now()
	n := newLAN(t)
	dns := n.net3 + ".254"
	settings := map[string]string{"retrybase": "1", "retrymax": "2", "resend": "3", "timeout": "5"}
	base := t.TempDir()
	ca := newFedCA(t)
	setup := func(name, domain, host string, octet, port, prio int, accounts ...string) *fedHost {
		ns := n.host(name, octet)
		opts := append([]string{"-r", dns + ":53", "-i", "1", "-p", fmt.Sprint(port), "-P", fmt.Sprint(prio)}, ca.opts(name, domain, host)...)
		args := []string{domain, host, fmt.Sprintf("%s.%d", n.net3, octet)}
		return hostSetup(t, ns, filepath.Join(base, name), settings, opts, args, accounts...)
	}
	a := setup("a", "a.test", "mx.a.test", 1, 4001, 10, "alice")
	// dave's fetch loop does not run: his spool shows a notification as
	// the agent keeps it.
	b := setup("b", "b.test", "mx.b.test", 2, 4001, 10, "bob", "dave")
	if err := os.RemoveAll(filepath.Join(b.dir, "service", "im2000-fetch-dave")); err != nil {
		t.Fatal(err)
	}
	c := setup("c", "c.test", "mx.c.test", 3, 4001, 10, "carol")
	// c.test's second agent: another host, whose RNASP records have the
	// higher priority number; its store is not published (each archive
	// lives on one store), so only its _rnasp and _rnasps lines and its
	// address go in.
	c2 := setup("d", "c.test", "mx2.c.test", 4, 4101, 20, "carol")
	var c2records []string
	for _, l := range strings.SplitAfter(c2.zone, "\n") {
		if strings.HasPrefix(l, "_rnasp.") || strings.HasPrefix(l, "_rnasps.") || strings.HasPrefix(l, "mx2.") {
			c2records = append(c2records, l)
		}
	}
	if len(c2records) != 3 {
		t.Fatalf("host-setup.sh -P 20 printed:\n%s", c2.zone)
	}
	for _, want := range []string{"_rnasp._tcp.a.test. 300 IN SRV 10 0 4003 mx.a.test.", "_msraps._tcp.a.test. 300 IN SRV 10 0 4006 mx.a.test.",
		"_rnasps._tcp.a.test. 300 IN SRV 10 0 4007 mx.a.test."} {
		if !strings.Contains(a.zone, want) {
			t.Fatalf("a.test's zone has no %q:\n%s", want, a.zone)
		}
	}
	if !strings.Contains(c2.zone, "SRV 20 0 4103 mx2.c.test.") || !strings.Contains(c2.zone, "_rnasps._tcp.c.test. 300 IN SRV 20 0 4107 mx2.c.test.") {
		t.Fatalf("zones:\n%s\n%s", a.zone, c2.zone)
	}
	for _, h := range []*fedHost{a, b, c, c2} {
		if loc, _ := os.ReadFile(filepath.Join(h.dir, "conf", "storelocation")); string(loc) != h.domain+"\n" {
			t.Fatalf("%s: storelocation %q, want the domain", h.dir, loc)
		}
		if ssl, _ := os.ReadFile(filepath.Join(h.dir, "conf", "storessl")); string(ssl) != h.domain+"\n" {
			t.Fatalf("%s: storessl %q, want the domain", h.dir, ssl)
		}
		if tlsca, _ := os.ReadFile(filepath.Join(h.dir, "users", "carol", "tlsca")); h.domain == "c.test" && string(tlsca) != ca.file+"\n" {
			t.Fatalf("%s: carol's tlsca %q, want %s", h.dir, tlsca, ca.file)
		}
		if _, err := os.Stat(filepath.Join(h.dir, "conf", "routes")); err == nil {
			t.Fatalf("%s has a routes file", h.dir)
		}
	}
	zones := map[string]string{
		"a.test": zone("a.test", dns, a.zone),
		"b.test": zone("b.test", dns, b.zone),
		"c.test": zone("c.test", dns, c.zone, strings.Join(c2records, "")),
		// a domain that exists, with no IM2000 records
		"plain.test": zone("plain.test", dns, "www IN A "+dns+"\n"),
	}
	nsd := newNSD(t, dns, zones)
	for _, h := range []*fedHost{a, b, c, c2} {
		h.start()
	}
	fail := func(format string, args ...any) {
		t.Helper()
		for _, h := range []*fedHost{a, b, c, c2} {
			t.Logf("%s logs:\n%s", h.domain, h.logs())
		}
		t.Fatalf(format, args...)
	}
	// Every service of every domain answers, as im2000-locate sees it
	// from another host through nsd.
	for _, h := range []*fedHost{a, b, c} {
		var r result
		if !waitQuiet(20*time.Second, func() bool { r = a.user("alice", "", "im2000-locate", "-t", "2", h.domain); return r.code == 0 }) {
			fail("im2000-locate %s: exit %d\n%s%s", h.domain, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "_rnasp._tcp."+h.domain+" (cleartext, from the DNS)") || !strings.Contains(r.stdout, "answers in RNASP") ||
			strings.Count(r.stdout, "certificate verified for "+h.domain) < 4 {
			t.Errorf("im2000-locate %s:\n%s", h.domain, r.stdout)
		}
		for _, s := range []string{"msoaps", "msraps", "rnasps", "rnaqps"} {
			if !strings.Contains(r.stdout, "_"+s+"._tcp."+h.domain+" (TLS, from the DNS)") {
				t.Errorf("im2000-locate %s: no %s:\n%s", h.domain, s, r.stdout)
			}
		}
	}
	t.Logf("three hosts up and located after %v", time.Since(began).Round(time.Millisecond))

	hosts := map[string]*fedHost{"alice": a, "bob": b, "carol": c}
	arrives := func(who, subject string, within time.Duration) {
		t.Helper()
		h := hosts[who]
		if !waitQuiet(within, func() bool { return h.count(who, subject) > 0 }) {
			fail("%q did not reach %s@%s within %v", subject, who, h.domain, within)
		}
	}
	// Between every pair, both ways.
	flow := time.Now()
	var sent []struct{ to, subject string }
	for from, fh := range hosts {
		for to, th := range hosts {
			if from != to {
				subject := fmt.Sprintf("pair %s to %s", from, to)
				fh.send(from, subject, to+"@"+th.domain)
				sent = append(sent, struct{ to, subject string }{to, subject})
			}
		}
	}
	// One message to all three.
	a.send("alice", "to all three", "alice@a.test", "bob@b.test", "carol@c.test")
	for _, s := range sent {
		arrives(s.to, s.subject, 30*time.Second)
	}
	for who := range hosts {
		arrives(who, "to all three", 30*time.Second)
	}
	t.Logf("6 messages between pairs and one to all three delivered in %v", time.Since(flow).Round(time.Millisecond))
	checkSeenTLS(t, hosts)
	checkStoreSSL(t, a, b, "dave", fail)

	// b is cut off: alice's message waits, and arrives once b is back.
	n.cut(b.ns)
	a.send("alice", "while cut", "bob@b.test")
	time.Sleep(4 * time.Second) // notifyd tries and fails meanwhile
	if b.count("bob", "while cut") != 0 {
		fail("delivered to a host that was cut off")
	}
	n.mend(b.ns)
	arrives("bob", "while cut", 40*time.Second)

	// The DNS server stops: mail waits (temporary), and goes when it is back.
	nsd.stop()
	b.send("bob", "while dns down", "carol@c.test")
	time.Sleep(4 * time.Second)
	if c.count("carol", "while dns down") != 0 {
		fail("delivered without DNS")
	}
	nsd.start()
	arrives("carol", "while dns down", 40*time.Second)

	// c.test's first agent goes down (both forms): its SRV records'
	// second agent (priority 20, on its own host) takes the notification
	// over TLS, and carol's fetch loop there delivers it.
	primary := []string{filepath.Join(c.dir, "service", "im2000-agentd.1"), filepath.Join(c.dir, "service", "im2000-agentd-tls.1")}
	if out, err := exec.Command("svc", append([]string{"-d"}, primary...)...).CombinedOutput(); err != nil {
		t.Fatalf("svc -d: %v %s", err, out)
	}
	waitQuiet(5*time.Second, func() bool { return supervisedPid(t, primary[0]) == 0 && supervisedPid(t, primary[1]) == 0 })
	a.send("alice", "failover", "carol@c.test")
	if !waitQuiet(30*time.Second, func() bool { return c2.count("carol", "failover") == 1 }) {
		fail("the second agent of c.test did not take the mail")
	}
	exec.Command("svc", append([]string{"-u"}, primary...)...).Run()

	checkDowngrade(t, nsd, zones, a, b, fail)

	// plain.test exists but publishes no IM2000 service: noservice,
	// temporary, never baddomain.
	id := a.send("alice", "to plain", "nobody@plain.test")
	var st result
	if !waitQuiet(20*time.Second, func() bool {
		st = a.user("alice", "", "im2000-status", id)
		return strings.Contains(st.stdout, "noservice")
	}) {
		fail("status of a message to a domain without IM2000 records:\n%s%s", st.stdout, st.stderr)
	}
	if strings.Contains(st.stdout, "baddomain") {
		t.Errorf("plain.test counted as a bad domain:\n%s", st.stdout)
	}
	r := a.user("alice", "", "im2000-locate", "-t", "2", "plain.test")
	if r.code != 111 || !strings.Contains(r.stdout, "noservice") {
		t.Errorf("im2000-locate plain.test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = a.user("alice", "", "im2000-locate", "-t", "2", "nosuch.a.test")
	if r.code != 100 || !strings.Contains(r.stdout, "baddomain") {
		t.Errorf("im2000-locate nosuch.a.test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Nothing arrived twice, after the resends have had their time.
	time.Sleep(4 * time.Second)
	for who, h := range hosts {
		for _, m := range maildirMessages(t, filepath.Join(h.dir, "mail", who)) {
			s := regexp.MustCompile(`(?m)^Subject: (.*)$`).FindStringSubmatch(m)
			if s != nil && h.count(who, s[1]) != 1 {
				t.Errorf("%s has %q %d times", who, s[1], h.count(who, s[1]))
			}
		}
	}
	for _, h := range []*fedHost{a, b, c, c2} {
		checkLog(t, h.domain, h.logs())
	}
	if c.count("carol", "failover") != 0 {
		t.Errorf("the mail taken by the second agent arrived at the first too")
	}
	t.Logf("federation test: %v in all", time.Since(began).Round(time.Millisecond))
}
