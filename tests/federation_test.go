package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lan is a network of namespaces joined by a bridge in this (the root)
// namespace, each with a veth pair: hosts on one link, as on a LAN, with
// the test's DNS server on the bridge's own address.
type lan struct {
	t      *testing.T
	ip     string // the ip command
	bridge string
	net3   string // the first three octets of the /24
	hosts  map[string]string
	links  map[string]string // namespace: its veth's root side
}

// newLAN makes the bridge and names the /24 after the process id, so that
// parallel runs do not meet; everything is removed when the test ends.
func newLAN(t *testing.T) *lan {
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip (iproute2) is not installed: run tests/deps.sh")
	}
	pid := os.Getpid() % 100000
	n := &lan{t: t, ip: ip, bridge: fmt.Sprintf("im2kb%d", pid), net3: fmt.Sprintf("10.232.%d", pid%250),
		hosts: map[string]string{}, links: map[string]string{}}
	t.Cleanup(func() { exec.Command(ip, "link", "del", n.bridge).Run() })
	n.run("link", "add", n.bridge, "type", "bridge")
	n.run("addr", "add", n.net3+".254/24", "dev", n.bridge)
	n.run("link", "set", n.bridge, "up")
	return n
}

func (n *lan) run(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(n.ip, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s (the test needs root for network namespaces)", strings.Join(args, " "), err, out)
	}
}

// host adds a namespace named after the test's process with the given
// last octets as its addresses (the first is its link's), and returns the
// namespace's name.
func (n *lan) host(name string, octets ...int) string {
	pid := os.Getpid() % 100000
	ns := fmt.Sprintf("im2kf%s%d", name, pid)
	root, inner := fmt.Sprintf("im2kr%s%d", name, pid), fmt.Sprintf("im2ki%s%d", name, pid)
	n.t.Cleanup(func() {
		exec.Command(n.ip, "link", "del", root).Run()
		exec.Command(n.ip, "netns", "del", ns).Run()
	})
	n.run("netns", "add", ns)
	n.run("link", "add", root, "type", "veth", "peer", "name", inner)
	n.run("link", "set", inner, "netns", ns)
	n.run("link", "set", root, "master", n.bridge)
	n.run("link", "set", root, "up")
	for _, o := range octets {
		n.run("netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("%s.%d/24", n.net3, o), "dev", inner)
	}
	n.run("netns", "exec", ns, "ip", "link", "set", inner, "up")
	n.run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
	n.links[ns] = root
	return ns
}

// cut takes a host off the network (its link on the bridge goes down),
// and mend puts it back.
func (n *lan) cut(ns string)  { n.run("link", "set", n.links[ns], "down") }
func (n *lan) mend(ns string) { n.run("link", "set", n.links[ns], "up") }

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
	u := filepath.Join(h.dir, "users", account)
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

// nsdServer is nsd serving zones on addr:53 in this namespace, stopped
// and started again as the test says.
type nsdServer struct {
	t    *testing.T
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newNSD(t *testing.T, addr string, zones map[string]string) *nsdServer {
	bin, err := exec.LookPath("nsd")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nsd"); err != nil {
			t.Fatal("nsd is not installed: run tests/deps.sh")
		}
		bin = "/usr/sbin/nsd"
	}
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	ip-address: %s@53
	do-ip4: yes
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: %q
	database: ""
	zonelistfile: %q
	xfrdfile: %q
	xfrdir: %q
	pidfile: %q
	cookie-secret-file: %q
	logfile: %q
	server-count: 1
	verbosity: 1
remote-control:
	control-enable: no
`, addr, dir, dir+"/zone.list", dir+"/xfrd.state", dir, dir+"/nsd.pid", dir+"/cookiesecrets.txt", dir+"/nsd.log")
	for origin, text := range zones {
		if err := os.WriteFile(filepath.Join(dir, origin+".zone"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "zone:\n\tname: %q\n\tzonefile: %q\n", origin, origin+".zone")
	}
	s := &nsdServer{t: t, conf: filepath.Join(dir, "nsd.conf")}
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-d", "-c", s.conf)
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start runs nsd and waits until it says it serves.
func (s *nsdServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	log := filepath.Join(filepath.Dir(s.conf), "nsd.log")
	os.Remove(log)
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if bytes.Contains(b, []byte("nsd started")) {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("nsd exited:\n%s\n%s", out.String(), b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nsd did not start within 10 s:\n%s\n%s", out.String(), b)
		}
	}
}

// stop ends nsd and the processes it forked (its process group).
func (s *nsdServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return
	}
	pid := s.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.done
	s.done = nil
}

// zone is a zone file for origin: its SOA and NS, and the records given.
func zone(origin, nsAddr string, records ...string) string {
	return fmt.Sprintf("$ORIGIN %s.\n$TTL 60\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 5\n@ IN NS ns.%s.\nns IN A %s\n%s",
		origin, origin, origin, origin, nsAddr, strings.Join(records, ""))
}

// TestFederation is three mail domains on three hosts, each a deployment
// made by conf/host-setup.sh in its own network namespace, run by svscan,
// with accounts from conf/add-account.sh and their fetch loops; a real
// authoritative DNS server (nsd) serves exactly the records host-setup.sh
// printed, and nothing else tells a host where another is: no routes
// files. Mail goes between every pair and to all three at once; a host is
// cut off the network and put back (its mail arrives once); the DNS
// server stops and starts again; the agent of one domain goes down and
// the second agent its SRV records name takes the mail; and a domain
// without IM2000 records is a temporary noservice, not baddomain.
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
	setup := func(name, domain, host string, octet, port, prio int, accounts ...string) *fedHost {
		ns := n.host(name, octet)
		opts := []string{"-r", dns + ":53", "-i", "1", "-p", fmt.Sprint(port), "-P", fmt.Sprint(prio)}
		args := []string{domain, host, fmt.Sprintf("%s.%d", n.net3, octet)}
		return hostSetup(t, ns, filepath.Join(base, name), settings, opts, args, accounts...)
	}
	a := setup("a", "a.test", "mx.a.test", 1, 4001, 10, "alice")
	b := setup("b", "b.test", "mx.b.test", 2, 4001, 10, "bob")
	c := setup("c", "c.test", "mx.c.test", 3, 4001, 10, "carol")
	// c.test's second agent: another host, whose RNASP records have the
	// higher priority number; its store is not published (each archive
	// lives on one store), so only its _rnasp lines and address go in.
	c2 := setup("d", "c.test", "mx2.c.test", 4, 4101, 20, "carol")
	var c2records []string
	for _, l := range strings.SplitAfter(c2.zone, "\n") {
		if strings.HasPrefix(l, "_rnasp.") || strings.HasPrefix(l, "mx2.") {
			c2records = append(c2records, l)
		}
	}
	if len(c2records) != 2 {
		t.Fatalf("host-setup.sh -P 20 printed:\n%s", c2.zone)
	}
	if !strings.Contains(a.zone, "_rnasp._tcp.a.test. 300 IN SRV 10 0 4003 mx.a.test.") || !strings.Contains(c2.zone, "SRV 20 0 4103 mx2.c.test.") {
		t.Fatalf("zones:\n%s\n%s", a.zone, c2.zone)
	}
	for _, h := range []*fedHost{a, b, c, c2} {
		if loc, _ := os.ReadFile(filepath.Join(h.dir, "conf", "storelocation")); string(loc) != h.domain+"\n" {
			t.Fatalf("%s: storelocation %q, want the domain", h.dir, loc)
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
		if !strings.Contains(r.stdout, "_rnasp._tcp."+h.domain+" (cleartext, from the DNS)") || !strings.Contains(r.stdout, "answers in RNASP") {
			t.Errorf("im2000-locate %s:\n%s", h.domain, r.stdout)
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

	// c.test's first agent goes down: its SRV records' second agent
	// (priority 20, on its own host) takes the notification, and carol's
	// fetch loop there delivers it.
	primary := filepath.Join(c.dir, "service", "im2000-agentd.1")
	if out, err := exec.Command("svc", "-d", primary).CombinedOutput(); err != nil {
		t.Fatalf("svc -d: %v %s", err, out)
	}
	waitQuiet(5*time.Second, func() bool { return supervisedPid(t, primary) == 0 })
	a.send("alice", "failover", "carol@c.test")
	if !waitQuiet(30*time.Second, func() bool { return c2.count("carol", "failover") == 1 }) {
		fail("the second agent of c.test did not take the mail")
	}
	exec.Command("svc", "-u", primary).Run()

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
