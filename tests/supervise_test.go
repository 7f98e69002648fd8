package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freeBase returns a port p with p..p+6 all free on loopback: setup.sh's
// seven ports.
func freeBase(t *testing.T) int {
	for try := 0; try < 50; try++ {
		base := 20000 + int(time.Now().UnixNano()%20000)
		ok := true
		for i := 0; i < 7 && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
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
	t.Fatal("no seven free ports in a row")
	return 0
}

var svPid = regexp.MustCompile(`: up \(pid (\d+)\)`)

// supervisedPid asks svstat for a service's pid (0 if it is not up).
func supervisedPid(t *testing.T, dir string) int {
	out, _ := exec.Command("svstat", dir).Output()
	m := svPid.FindSubmatch(out)
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// TestSupervised builds a deployment with conf/setup.sh, runs it under
// daemontools' svscan, kills every daemon with SIGKILL while mail flows,
// and checks that supervise restarts them and that no mail is lost.
func TestSupervised(t *testing.T) {
	if _, err := exec.LookPath("svscan"); err != nil {
		t.Fatal("svscan (daemontools) is not installed: run tests/deps.sh")
	}
	dir := filepath.Join(t.TempDir(), "im2000")
	base := freeBase(t)
	out, err := exec.Command("sh", "../conf/setup.sh", "-s", "daemontools", "-p", strconv.Itoa(base), "-b", bin, dir, "alice", "bob").CombinedOutput()
	if err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	for name, v := range map[string]string{"retrybase": "1", "retrymax": "2", "resend": "3"} { // seconds, not the defaults' minutes
		os.WriteFile(filepath.Join(dir, "conf", name), []byte(v+"\n"), 0o644)
	}
	svc := filepath.Join(dir, "service")
	scan := exec.Command("svscan", svc)
	scan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := scan.Start(); err != nil {
		t.Fatal(err)
	}
	services, _ := filepath.Glob(filepath.Join(svc, "*"))
	t.Cleanup(func() {
		for _, s := range services {
			exec.Command("svc", "-dx", s, s+"/log").Run()
		}
		syscall.Kill(-scan.Process.Pid, syscall.SIGTERM)
		scan.Wait()
		time.Sleep(200 * time.Millisecond)
	})
	for i := 0; i < 7; i++ { // the four IM2000 servers, IMAP, IMAP over TLS, the SMTP gateway
		await(t, 10*time.Second, "service on port "+strconv.Itoa(base+i), func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	user := func(a string) *env {
		return &env{t: t, vars: []string{"IM2000_CONF=" + filepath.Join(dir, "users", a), "IM2000_ACCOUNT=" + a, "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}}
	}
	alice, bob := user("alice"), user("bob")
	bobMail := filepath.Join(dir, "mail", "bob")
	fetched := func(n int) func() bool {
		return func() bool {
			bob.run("", "im2000-fetch")
			return len(maildirMessages(t, bobMail)) >= n
		}
	}
	alice.inject("Subject: before\n\npost-before\n", "bob@example.org")
	await(t, 20*time.Second, "the first message fetched", fetched(1))

	// Kill every daemon (tcpserver for the servers) with SIGKILL; supervise
	// must bring each back, and mail sent meanwhile must all arrive once.
	for _, name := range []string{"im2000-notifyd", "im2000-agentd", "im2000-submitd", "im2000-retrieved", "im2000-queryd", "im2000-listd-bob"} {
		s := filepath.Join(svc, name)
		old := supervisedPid(t, s)
		if old == 0 {
			t.Fatalf("%s is not up", name)
		}
		syscall.Kill(old, syscall.SIGKILL)
		alice.inject(fmt.Sprintf("Subject: during %s\n\npost-%s\n", name, name), "bob@example.org")
		await(t, 10*time.Second, name+" restarted by supervise", func() bool {
			p := supervisedPid(t, s)
			return p != 0 && p != old
		})
	}
	if !waitQuiet(60*time.Second, fetched(7)) {
		for _, name := range []string{"im2000-notifyd", "im2000-agentd", "im2000-submitd", "im2000-queryd"} {
			b, _ := os.ReadFile(filepath.Join(svc, name, "log", "main", "current"))
			t.Logf("%s log:\n%s", name, b)
		}
		t.Logf("bob fetch: %+v", bob.run("", "im2000-fetch"))
		t.Fatalf("not every message fetched: %d", len(maildirMessages(t, bobMail)))
	}
	time.Sleep(time.Second)
	bob.run("", "im2000-fetch")
	msgs := maildirMessages(t, bobMail)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[regexp.MustCompile(`post-[\w-]+`).FindString(m)]++
	}
	if len(msgs) != 7 {
		t.Fatalf("bob has %d messages, want 7: %v", len(msgs), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	r := alice.run("", "im2000-status")
	if strings.Count(r.stdout, "1 silenced") != 7 {
		t.Errorf("alice's status does not show all seven silenced:\n%s", r.stdout)
	}
	logs, _ := os.ReadFile(filepath.Join(svc, "im2000-notifyd", "log", "main", "current"))
	if !regexp.MustCompile(`im2000-notifyd: info: attempt: \S+ bob@example\.org `).Match(logs) {
		t.Errorf("notifyd's multilog has no attempt lines:\n%s", logs)
	}

	// Mail from the SMTP world through the deployment's gateway for alice
	// (another domain refused), read with her password over IMAP, with
	// STARTTLS and with TLS from the first byte, the private CA trusted.
	ca := filepath.Join(dir, "tls", "ca.pem")
	gatewaySend(t, fmt.Sprintf("127.0.0.1:%d", base+6), ca, "alice@example.org", "from the SMTP world")
	pw := setupPassword(t, dir, "alice")
	imapRead(t, fmt.Sprintf("127.0.0.1:%d", base+4), "starttls", ca, "alice", pw, "from the SMTP world")
	imapRead(t, fmt.Sprintf("127.0.0.1:%d", base+5), "implicit", ca, "alice", pw, "from the SMTP world")
}

// setupPassword is an account's password from setup.sh's passwords.txt.
func setupPassword(t *testing.T, dir, account string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "passwords.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == account {
			return f[1]
		}
	}
	t.Fatalf("no password for %s in passwords.txt:\n%s", account, b)
	return ""
}

func waitQuiet(d time.Duration, cond func() bool) bool {
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// TestSetupFlavors checks the runit and s6 service directories setup.sh
// writes: every daemon has a run and a log/run with the flavour's logger,
// and every script parses.
func TestSetupFlavors(t *testing.T) {
	for flavor, logger := range map[string]string{"runit": "svlogd -tt ./main", "s6": "s6-log t ./main", "daemontools": "multilog t ./main"} {
		dir := filepath.Join(t.TempDir(), flavor)
		if out, err := exec.Command("sh", "../conf/setup.sh", "-s", flavor, "-b", bin, dir, "carol").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", flavor, err, out)
		}
		for _, name := range []string{"im2000-submitd", "im2000-retrieved", "im2000-notifyd", "im2000-agentd", "im2000-queryd", "im2000-listd-carol",
			"im2000-imapd", "im2000-imapd-tls", "im2000-gatewayd"} {
			s := filepath.Join(dir, "service", name)
			for _, script := range []string{"run", "log/run"} {
				if out, err := exec.Command("sh", "-n", filepath.Join(s, script)).CombinedOutput(); err != nil {
					t.Errorf("%s %s/%s: %v %s", flavor, name, script, err, out)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(s, "log", "run")); !strings.Contains(string(b), logger) {
				t.Errorf("%s %s: log/run is %q", flavor, name, b)
			}
		}
	}
	if out, err := exec.Command("sh", "../conf/setup.sh", "-s", "systemd", t.TempDir(), "x").CombinedOutput(); err == nil {
		t.Errorf("an unknown supervisor was accepted: %s", out)
	}
	// The gateway's account has no password: setup.sh makes none for it.
	if out, err := exec.Command("sh", "../conf/setup.sh", "-b", bin, t.TempDir(), "alice", "smtp").CombinedOutput(); err == nil || !strings.Contains(string(out), "gateway") {
		t.Errorf("an account named as the gateway's was accepted: %v %s", err, out)
	}
	// -S with -U and -W: the smarthost settings, the password from a file.
	dir := filepath.Join(t.TempDir(), "smarthost")
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("relay secret\n"), 0o600)
	if out, err := exec.Command("sh", "../conf/setup.sh", "-b", bin, "-S", "relay.example.net:587", "-U", "me", "-W", pwFile, dir, "carol").CombinedOutput(); err != nil {
		t.Fatalf("setup.sh -S -U -W: %v\n%s", err, out)
	}
	for name, want := range map[string]string{"smarthost": "relay.example.net:587", "smarthostuser": "me", "smarthostpassword": "relay secret", "gatewayaccount": "smtp", "postmaster": "carol"} {
		if b, _ := os.ReadFile(filepath.Join(dir, "conf", name)); strings.TrimSpace(string(b)) != want {
			t.Errorf("conf/%s is %q, want %q", name, b, want)
		}
	}
	if out, err := exec.Command("sh", "../conf/setup.sh", "-b", bin, "-U", "me", t.TempDir(), "carol").CombinedOutput(); err == nil {
		t.Errorf("-U without -S and -W was accepted: %s", out)
	}
}
