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

// freeBase returns a port p with p..p+3 all free on loopback.
func freeBase(t *testing.T) int {
	for try := 0; try < 50; try++ {
		base := 20000 + int(time.Now().UnixNano()%20000)
		ok := true
		for i := 0; i < 4 && ok; i++ {
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
	t.Fatal("no four free ports in a row")
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
	for i := 0; i < 4; i++ {
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
	if !strings.Contains(string(logs), "bob@example.org") {
		t.Errorf("notifyd's multilog has no attempt lines:\n%s", logs)
	}
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
		for _, name := range []string{"im2000-submitd", "im2000-retrieved", "im2000-notifyd", "im2000-agentd", "im2000-queryd", "im2000-listd-carol"} {
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
}
