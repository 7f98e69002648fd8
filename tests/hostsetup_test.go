package tests

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
)

// freePorts finds n consecutive free loopback ports (TCP), for a script
// that numbers its services from a base port.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := freePort(t)
		if base+n > 65000 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// runScript runs one of conf/'s scripts and returns its exit code and
// output.
func runScript(t *testing.T, script string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("sh", append([]string{"../conf/" + script}, args...)...).CombinedOutput()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// TestHostSetup is a host deployment as a new admin makes it: TLS files
// and a private CA given to conf/host-setup.sh, accounts added and one
// removed with conf/add-account.sh and conf/remove-account.sh, everything
// run by svscan. It checks the DNS records and ports printed (with the
// TLS forms), im2000-locate's view of the services (TLS verified for the
// domain, every man page example), mail submitted over MSOAP with the
// password add-account.sh made, the supervised fetch loop woken by
// SIGALRM and SIGHUP (its interval is an hour, so only the signals can
// deliver), the refusal to send as an account the store does not know,
// and a removed account's agent answering nouser.
func TestHostSetup(t *testing.T) {
	if _, err := exec.LookPath("svscan"); err != nil {
		t.Fatal("svscan (daemontools) is not installed: run tests/deps.sh")
	}
	dir := filepath.Join(t.TempDir(), "host")
	files := t.TempDir()
	ca := tlstest.NewCA(t)
	crt, key, caFile := filepath.Join(files, "fullchain.pem"), filepath.Join(files, "privkey.pem"), filepath.Join(files, "ca.pem")
	ca.WriteLeaf(t, crt, key, 1, "example.org", "mx.example.org", "127.0.0.1")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	base := freePorts(t, 15)
	code, out := runScript(t, "host-setup.sh", "-b", bin, "-p", strconv.Itoa(base), "-c", crt, "-k", key, "-A", caFile,
		"-i", "3600", dir, "Example.ORG", "mx.example.org", "127.0.0.1")
	if code != 0 {
		t.Fatalf("host-setup.sh: exit %d\n%s", code, out)
	}
	for i, s := range []string{"msoap", "msrap", "rnasp", "rnaqp", "msoaps", "msraps", "rnasps", "rnaqps"} {
		want := fmt.Sprintf("_%s._tcp.example.org. 300 IN SRV 10 0 %d mx.example.org.\n", s, base+i)
		if !strings.Contains(out, want) {
			t.Errorf("host-setup.sh did not print %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"mx.example.org. 300 IN A 127.0.0.1\n", fmt.Sprintf("%d SMTP submission (STARTTLS)", base+8),
		fmt.Sprintf("%d POP3 (STLS)", base+9), fmt.Sprintf("%d SMTP over TLS", base+10), "example.org. 300 IN MX 10 mx.example.org.\n",
		fmt.Sprintf("%d IMAP (STARTTLS)     %d IMAP over TLS", base+12, base+13),
		fmt.Sprintf("%d SMTP gateway (inbound, the MX): have the firewall map port 25 to it", base+14)} {
		if !strings.Contains(out, want) {
			t.Errorf("host-setup.sh did not print %q:\n%s", want, out)
		}
	}
	setting := func(file string) string {
		b, _ := os.ReadFile(filepath.Join(dir, file))
		return strings.TrimSpace(string(b))
	}
	if setting("conf/storelocation") != "example.org" || setting("conf/me") != "example.org" || setting("conf/tlscert") != crt || setting("conf/tlsca") != caFile {
		t.Errorf("settings: storelocation %q, me %q, tlscert %q, tlsca %q", setting("conf/storelocation"), setting("conf/me"), setting("conf/tlscert"), setting("conf/tlsca"))
	}
	// With a certificate every notification names the store's TLS form.
	if setting("conf/storessl") != "example.org" {
		t.Errorf("storessl %q with -c, want the domain", setting("conf/storessl"))
	}
	if code, out := runScript(t, "host-setup.sh", "-b", bin, dir, "example.org", "mx.example.org", "127.0.0.1"); code != 100 || !strings.Contains(out, "exists") {
		t.Errorf("host-setup.sh over an existing deployment: exit %d %s", code, out)
	}
	if code, out := runScript(t, "host-setup.sh", "-b", bin, "-c", crt, t.TempDir(), "example.org", "mx.example.org", "127.0.0.1"); code != 100 || !strings.Contains(out, "-c and -k go together") {
		t.Errorf("host-setup.sh -c without -k: exit %d %s", code, out)
	}

	// Accounts.
	passwords := map[string]string{}
	for _, a := range []string{"alice", "bob"} {
		code, out := runScript(t, "add-account.sh", "-C", "4", dir, a)
		f := strings.Fields(out)
		if code != 0 || len(f) != 2 || f[0] != a+"@example.org" {
			t.Fatalf("add-account.sh %s: exit %d %s", a, code, out)
		}
		passwords[a] = f[1]
	}
	for _, bad := range [][]string{{dir, "alice"}, {dir, "Bob"}, {dir, ".x"}, {t.TempDir(), "carol"}, {"-C", "3", dir, "carol"}, {dir, "smtp"}} {
		if code, out := runScript(t, "add-account.sh", bad...); code != 100 {
			t.Errorf("add-account.sh %v: exit %d, want 100: %s", bad, code, out)
		}
	}
	if pm := setting("conf/postmaster"); pm != "alice" {
		t.Errorf("conf/postmaster %q, want the first account added, alice", pm)
	}
	if pw := setting("users/bob/password"); pw != passwords["bob"] {
		t.Errorf("bob's password file %q, printed %q", pw, passwords["bob"])
	}
	// The domain's services, for the store and the users, as the DNS
	// records printed would say (this test has no DNS server; the
	// federation test has).
	var routes strings.Builder
	for i, s := range []string{"msoap", "msrap", "rnasp", "rnaqp", "msoaps", "msraps", "rnasps", "rnaqps"} {
		fmt.Fprintf(&routes, "_%s._tcp.example.org 127.0.0.1:%d\n", s, base+i)
	}
	for _, c := range []string{"conf", "users/alice", "users/bob"} {
		for name, v := range map[string]string{"routes": routes.String(), "retrybase": "1", "retrymax": "2", "resend": "3", "timeout": "10"} {
			if err := os.WriteFile(filepath.Join(dir, c, name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	svc := filepath.Join(dir, "service")
	scan := exec.Command("svscan", svc)
	scan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := scan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		services, _ := filepath.Glob(filepath.Join(svc, "*"))
		for _, s := range services {
			exec.Command("svc", "-dx", s, s+"/log").Run()
		}
		syscall.Kill(-scan.Process.Pid, syscall.SIGTERM)
		scan.Wait()
		time.Sleep(200 * time.Millisecond)
	})
	admin := &env{t: t, vars: []string{"IM2000_CONF=" + filepath.Join(dir, "conf"), "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}}
	var r result
	if !waitQuiet(30*time.Second, func() bool { r = admin.run("", "im2000-locate", "-t", "3", "example.org"); return r.code == 0 }) {
		t.Fatalf("im2000-locate example.org: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"_msraps._tcp.example.org (TLS, from the routes file)", "answers in MSRAP", "certificate verified for example.org", "answers in RNASP"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("im2000-locate example.org does not say %q:\n%s", want, r.stdout)
		}
	}
	// Every example of the page runs, as the admin would type it.
	page, _ := os.ReadFile("../man/im2000-locate.8")
	examples := 0
	for _, l := range strings.Split(string(page[bytes.Index(page, []byte(".SH EXAMPLES")):]), "\n") {
		if f := strings.Fields(strings.ReplaceAll(l, `\-`, "-")); len(f) > 0 && f[0] == "im2000-locate" {
			examples++
			if r := admin.run("", "im2000-locate", f[1:]...); r.code != 0 {
				t.Errorf("the example %q: exit %d\n%s%s", l, r.code, r.stdout, r.stderr)
			}
		}
	}
	if examples < 2 {
		t.Errorf("%d examples found in im2000-locate(8)", examples)
	}

	user := func(a string) *env {
		return &env{t: t, vars: []string{"IM2000_CONF=" + filepath.Join(dir, "users", a), "IM2000_ACCOUNT=" + a, "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}}
	}
	alice := user("alice")
	bobMail := filepath.Join(dir, "mail", "bob")
	loop := filepath.Join(svc, "im2000-fetch-bob")
	await(t, 20*time.Second, "bob's fetch loop up", func() bool { return supervisedPid(t, loop) != 0 })
	time.Sleep(time.Second) // its first run, at start, finds nothing
	arrived := func(subject string) func() bool {
		return func() bool {
			for _, m := range maildirMessages(t, bobMail) {
				if strings.Contains(m, "Subject: "+subject+"\n") {
					return true
				}
			}
			return false
		}
	}
	for _, step := range []struct{ subject, signal string }{{"woken by an alarm", "-a"}, {"woken by a hangup", "-h"}} {
		alice.inject("Subject: "+step.subject+"\n\nhello\n", "bob@example.org")
		// Notified by now or soon; the loop sleeps an hour unless woken.
		time.Sleep(2 * time.Second)
		if arrived(step.subject)() {
			t.Fatalf("%q arrived before the loop was woken", step.subject)
		}
		if out, err := exec.Command("svc", step.signal, loop).CombinedOutput(); err != nil {
			t.Fatalf("svc %s: %v %s", step.signal, err, out)
		}
		if !waitQuiet(20*time.Second, arrived(step.subject)) {
			log, _ := os.ReadFile(filepath.Join(loop, "log", "main", "current"))
			t.Fatalf("%q did not arrive after svc %s; the loop's log:\n%s", step.subject, step.signal, log)
		}
	}
	log, _ := os.ReadFile(filepath.Join(loop, "log", "main", "current"))
	for _, want := range []string{"im2000-fetch: info: loop started: every 1h0m0s", "info: loop woken: alarm clock", "info: loop woken: hangup"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("the loop's log has no %q:\n%s", want, log)
		}
	}

	// Mail from the SMTP world at the MX's port for alice (another domain
	// refused), read over IMAP with STARTTLS and with TLS from the first
	// byte. Her fetch loop is stopped, so IMAP is the reader.
	if out, err := exec.Command("svc", "-d", filepath.Join(svc, "im2000-fetch-alice")).CombinedOutput(); err != nil {
		t.Fatalf("svc -d: %v %s", err, out)
	}
	gatewaySend(t, fmt.Sprintf("127.0.0.1:%d", base+14), caFile, "alice@example.org", "from the SMTP world")
	imapRead(t, fmt.Sprintf("127.0.0.1:%d", base+12), "starttls", caFile, "alice", passwords["alice"], "from the SMTP world")
	imapRead(t, fmt.Sprintf("127.0.0.1:%d", base+13), "implicit", caFile, "alice", passwords["alice"], "from the SMTP world")

	// The store's own configuration without IM2000_ACCOUNT: the login
	// name is no account here, and nothing is made for it.
	login := &env{t: t, vars: []string{"IM2000_CONF=" + filepath.Join(dir, "conf"), "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "USER=root", "LOGNAME=root"}}
	before, _ := os.ReadDir(filepath.Join(dir, "store"))
	r = login.run("Subject: who am I\n\nx\n", "im2000-inject", "bob@example.org")
	if r.code != 100 || !strings.Contains(r.stderr, "IM2000_ACCOUNT is not set") {
		t.Errorf("inject as an unknown login name: exit %d %s", r.code, r.stderr)
	}
	if after, _ := os.ReadDir(filepath.Join(dir, "store")); len(after) != len(before) {
		t.Errorf("the refused inject left something in the store: %d entries, %d before", len(after), len(before))
	}

	// bob is removed: no more logins, and his agent answers nouser.
	if code, out := runScript(t, "remove-account.sh", dir, "bob"); code != 0 {
		t.Fatalf("remove-account.sh: exit %d %s", code, out)
	}
	if _, err := os.Stat(loop); err == nil {
		t.Errorf("bob's fetch loop is still there")
	}
	if strings.Contains(setting("conf/passwords"), "bob:") || !strings.Contains(setting("conf/passwords"), "alice:") {
		t.Errorf("passwords after removing bob:\n%s", setting("conf/passwords"))
	}
	if code, _ := runScript(t, "remove-account.sh", dir, "bob"); code != 100 {
		t.Errorf("removing bob twice: exit %d", code)
	}
	id := alice.inject("Subject: after\n\nx\n", "bob@example.org")
	if !waitQuiet(20*time.Second, func() bool { r = alice.run("", "im2000-status", id); return strings.Contains(r.stdout, "nouser") }) {
		t.Errorf("status of a message to a removed account:\n%s%s", r.stdout, r.stderr)
	}
	// Over MSOAP the dates the store does not tell are left out, not zero;
	// when it was submitted, and the lifetime asked, come from the sent log.
	r = alice.run("", "im2000-status", "--json", id)
	if r.code != 0 || strings.Contains(r.stdout, "0001-01-01") || !strings.Contains(r.stdout, `"submitted": "20`) ||
		!strings.Contains(r.stdout, `"expires_asked": true`) || strings.Contains(r.stdout, `"next_attempt"`) {
		t.Errorf("remote status --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestAdminErrors: the messages that used to send an admin looking in the
// wrong place each say what is wrong and where.
func TestAdminErrors(t *testing.T) {
	// A configuration directory that does not exist is said to be missing.
	e := newEnv(t, "alice")
	missing := filepath.Join(t.TempDir(), "nosuch")
	e.vars = append(e.vars, "IM2000_CONF="+missing) // the last one counts
	for _, prog := range []string{"im2000-inject", "im2000-fetch"} {
		r := e.run("Subject: x\n\nx\n", prog, "bob@example.org")
		if prog == "im2000-fetch" {
			r = e.run("", prog)
		}
		if r.code != 100 || !strings.Contains(r.stderr, "configuration directory "+missing+" (IM2000_CONF) does not exist") {
			t.Errorf("%s with a missing IM2000_CONF: exit %d %s", prog, r.code, r.stderr)
		}
	}

	// A bad domain in me is about me, not the account.
	e = newEnv(t, "alice")
	e.setConf("me", "exa mple.org")
	r := e.run("Subject: x\n\nx\n", "im2000-inject", "bob@example.org")
	if r.code != 100 || !strings.Contains(r.stderr, `"exa mple.org" is not a domain name`) || !strings.Contains(r.stderr, filepath.Join(e.conf, "me")) || strings.Contains(r.stderr, "account") {
		t.Errorf("inject with a bad me: exit %d %s", r.code, r.stderr)
	}

	// An rna without its port is an address, not a domain to look up.
	e = newEnv(t, "bob")
	e.setConf("rna", "127.0.0.1")
	e.setConf("password", "pw")
	e.setConf("maildir", filepath.Join(t.TempDir(), "Maildir"))
	r = e.run("", "im2000-fetch")
	if r.code == 0 || !strings.Contains(r.stderr, `agent 127.0.0.1: "127.0.0.1" is an address, not a domain: write it with its port`) {
		t.Errorf("fetch with rna 127.0.0.1: exit %d %s", r.code, r.stderr)
	}

	// A store the user may not write: the hint is to submit over MSOAP.
	// (The tests run as root, whom permissions do not stop: the command
	// runs as nobody.)
	top, err := os.MkdirTemp("", "im2000-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	conf, store := filepath.Join(top, "conf"), filepath.Join(top, "store")
	os.Mkdir(conf, 0o755)
	os.Mkdir(store, 0o700)
	os.WriteFile(filepath.Join(conf, "me"), []byte("example.org\n"), 0o644)
	os.WriteFile(filepath.Join(conf, "store"), []byte(store+"\n"), 0o644)
	prog, _ := os.ReadFile(filepath.Join(bin, "im2000-inject")) // bin is closed to others
	if err := os.WriteFile(filepath.Join(top, "im2000-inject"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(top, "im2000-inject"), "bob@example.org")
	cmd.Env = []string{"IM2000_CONF=" + conf, "IM2000_ACCOUNT=alice", "PATH=" + os.Getenv("PATH"), "HOME=/"}
	cmd.Stdin = strings.NewReader("Subject: x\n\nx\n")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if x, ok := err.(*exec.ExitError); !ok || x.ExitCode() != 111 || !bytes.Contains(out, []byte("permission denied")) ||
		!bytes.Contains(out, []byte("submit over MSOAP instead")) || !bytes.Contains(out, []byte(filepath.Join(conf, "remote"))) {
		t.Errorf("inject into a store of another user: %v %s", err, out)
	}
}

// TestHostSetupFlavors: host-setup.sh's service directories for runit and
// s6 have their loggers, every script parses, and an IPv6 address gets a
// listener of its own (tcpserver binds IPv4 only) and an AAAA record.
func TestHostSetupFlavors(t *testing.T) {
	for flavor, logger := range map[string]string{"runit": "svlogd -tt ./main", "s6": "s6-log t ./main", "daemontools": "multilog t ./main"} {
		dir := filepath.Join(t.TempDir(), flavor)
		code, out := runScript(t, "host-setup.sh", "-s", flavor, "-b", bin, dir, "example.net", "mx.example.net", "192.0.2.7", "2001:db8::7")
		if code != 0 {
			t.Fatalf("host-setup.sh -s %s: exit %d\n%s", flavor, code, out)
		}
		if !strings.Contains(out, "mx.example.net. 300 IN AAAA 2001:db8::7\n") || !strings.Contains(out, "mx.example.net. 300 IN A 192.0.2.7\n") {
			t.Errorf("%s: address records:\n%s", flavor, out)
		}
		runs, _ := filepath.Glob(filepath.Join(dir, "service", "*", "run"))
		if len(runs) != 8*3+1 { // eight servers (imapd, gatewayd) on two addresses and loopback, and notifyd
			t.Errorf("%s: %d service directories, want 25: %v", flavor, len(runs), runs)
		}
		for _, run := range runs {
			for _, f := range []string{run, filepath.Join(filepath.Dir(run), "log", "run")} {
				if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
					t.Errorf("%s: %v %s", f, err, out)
				}
			}
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(run), "log", "run"))
			if !strings.Contains(string(b), logger) {
				t.Errorf("%s/log/run: %q, want %s", filepath.Dir(run), b, logger)
			}
		}
		// Without a certificate no notification may name a TLS form.
		if _, err := os.Stat(filepath.Join(dir, "conf", "storessl")); err == nil {
			t.Errorf("%s: a storessl setting without -c", flavor)
		}
		v6, _ := os.ReadFile(filepath.Join(dir, "service", "im2000-agentd.2", "run"))
		if !strings.Contains(string(v6), "im2000-agentd  -l [2001:db8::7]:4003") {
			t.Errorf("%s: the IPv6 agent: %s", flavor, v6)
		}
	}
	if code, out := runScript(t, "host-setup.sh", "-s", "systemd", "-b", bin, t.TempDir(), "example.net", "mx.example.net", "192.0.2.7"); code != 100 {
		t.Errorf("-s systemd: exit %d %s", code, out)
	}
	if code, out := runScript(t, "host-setup.sh", "-b", bin, t.TempDir(), "example.net", "mx.example.net", "not-an-address"); code != 100 || !strings.Contains(out, "not an IPv4 or IPv6 address") {
		t.Errorf("a bad address: exit %d %s", code, out)
	}
}
