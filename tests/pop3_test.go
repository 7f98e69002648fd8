package tests

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPOP3 reads IM2000 mail with real POP3 clients: Python's poplib looks,
// tops, retrieves and deletes one message; mpop then delivers the rest into
// a Maildir; alice's status shows what each step did at her store.
func TestPOP3(t *testing.T) {
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	time.Sleep(300 * time.Millisecond)
	id1 := h.inject("Subject: first\n\n.leading dot\nline two\n", "bob@example.net")
	id2 := h.inject("Subject: second\n\nhello again\n", "bob@example.net")
	for _, id := range []string{id1, id2} {
		await(t, 5*time.Second, "bob notified", func() bool {
			return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread"
		})
	}

	pe := newEnv(t, "bob")
	pe.setConf("rna", bobAgent.rnaqp)
	pe.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	pe.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n") // binds alice's store to her domain
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	port := strconv.Itoa(freePort(t))
	daemonEnv(t, pe.vars, "127.0.0.1:"+port, tcpserver, "-RHl0", "127.0.0.1", port, filepath.Join(bin, "im2000-pop3d"))

	py := `import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
try:
    p.user("bob"); p.pass_("wrong")
    print("wrong password accepted")
except poplib.error_proto:
    pass
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
p.user("bob"); p.pass_("bobpw")
n, size = p.stat()
uidls = dict(u.decode().split() for u in p.uidl()[1])
first = [i for i in (1, 2) if b"Subject: first" in b"\n".join(p.top(i, 0)[1])][0]
other = 3 - first
top = b"\n".join(p.top(first, 0)[1])
msg = b"\n".join(p.retr(first)[1])
p.dele(first)
p.quit()
print(n, size, len(uidls), b"Subject: first" in top, b"line two" in top, b".leading dot" in msg, uidls[str(other)])
`
	out, err := exec.Command("/usr/bin/python3", "-c", py, port).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 7 || f[0] != "2" || f[2] != "2" || f[3] != "True" || f[4] != "False" || f[5] != "True" {
		t.Fatalf("poplib saw %q", out)
	}
	uidl2 := f[6] // "2 <uid>" of the message left
	if s := recipientStates(t, h.store, "alice", id1)["bob@example.net"]; s != "silenced/readall" {
		t.Fatalf("message 1 after RETR, DELE, QUIT: %s", s)
	}
	if s := recipientStates(t, h.store, "alice", id2)["bob@example.net"]; s != "notifying/readheaders" {
		t.Fatalf("message 2, only looked at with TOP: %s", s)
	}

	// The undeleted message is still there in a later session (logged in
	// with AUTH PLAIN this time), under the same UIDL.
	py2 := `import base64, poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0bobpw").decode())
print(p.stat()[0], p.uidl()[1][0].decode().split()[1])
p.quit()
`
	out, err = exec.Command("/usr/bin/python3", "-c", py2, port).CombinedOutput()
	if f := strings.Fields(string(out)); err != nil || len(f) != 2 || f[0] != "1" || f[1] != uidl2 {
		t.Fatalf("second session: %v %q (want 1 message with UIDL %s)", err, out, uidl2)
	}

	// mpop delivers what is left into a Maildir, and deletes it.
	mpop, err := exec.LookPath("mpop")
	if err != nil {
		t.Fatal("mpop is not installed: run tests/deps.sh")
	}
	maildir := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"tmp", "new", "cur"} {
		os.MkdirAll(filepath.Join(maildir, d), 0o700)
	}
	rc := filepath.Join(t.TempDir(), "mpoprc")
	os.WriteFile(rc, []byte("account default\nhost 127.0.0.1\nport "+port+"\nuser bob\npassword bobpw\nauth user\ntls off\ndelivery maildir "+maildir+"\nkeep off\nuidls_file "+filepath.Join(t.TempDir(), "uidls")+"\n"), 0o600)
	if out, err := exec.Command(mpop, "-C", rc, "-q").CombinedOutput(); err != nil {
		t.Fatalf("mpop: %v\n%s", err, out)
	}
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "hello again") {
		t.Fatalf("mpop's Maildir: %q", msgs)
	}
	r := h.run("", "im2000-status")
	if strings.Count(r.stdout, "1 silenced") != 2 {
		t.Fatalf("alice's status after POP3:\n%s", r.stdout)
	}
	if r := h.run("", "im2000-status", id2); !strings.Contains(r.stdout, "silenced\treadall") {
		t.Fatalf("message 2 after mpop: %s", r.stdout)
	}

	// As a listener with -c 1: a second session is refused while the
	// first is open, and the slot comes back when it closes.
	lport := strconv.Itoa(freePort(t))
	daemonEnv(t, pe.vars, "127.0.0.1:"+lport, filepath.Join(bin, "im2000-pop3d"), "-l", "127.0.0.1:"+lport, "-c", "1")
	var first net.Conn
	session := func() bool { // the readiness probe may still hold the slot
		if first, err = net.Dial("tcp", "127.0.0.1:"+lport); err != nil {
			t.Fatal(err)
		}
		first.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(first).ReadString('\n')
		if !strings.HasPrefix(line, "+OK") {
			first.Close()
			return false
		}
		return true
	}
	await(t, 5*time.Second, "a session", session)
	if r := greeting(t, "127.0.0.1:"+lport); r != "-ERR [SYS/TEMP] too many sessions, try again later\r\n" {
		t.Fatalf("a second session over -c 1: %q", r)
	}
	first.Close()
	await(t, 5*time.Second, "the slot back", session)
	first.Close()
}

// pop3Login opens a POP3 session at addr, sends USER and PASS, and returns
// the answer to PASS; the session ends with QUIT when it succeeded.
func pop3Login(t *testing.T, addr, user, pass string) string {
	return pop3LoginFrom(t, "127.0.0.1", addr, user, pass)
}

// pop3LoginFrom is pop3Login from the loopback address from.
func pop3LoginFrom(t *testing.T, from, addr, user, pass string) string {
	c, err := connFrom(from, addr)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, "+OK") {
		return "greeting: " + line
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pass} {
		c.Write([]byte(cmd + "\r\n"))
		if line, _ = r.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
			return strings.TrimSpace(line)
		}
	}
	c.Write([]byte("QUIT\r\n"))
	r.ReadString('\n')
	return strings.TrimSpace(line)
}

// TestPOP3PasswordLoop: wrong passwords for bob, two at a time without a
// pause, do not keep bob out (the maildrop is locked only once the agent
// has accepted the password), and a failed login leaves nothing on disk.
func TestPOP3PasswordLoop(t *testing.T) {
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	frontEnd(t, bobAgent) // pop3d delays the guesser itself (abuse_frontend_test.go)
	pe := newEnv(t, "bob")
	pe.setConf("rna", bobAgent.rnaqp)
	state := filepath.Join(t.TempDir(), "pop3")
	pe.setConf("pop3state", state)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	daemonEnv(t, pe.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr)

	// Failed logins, for an unknown name and for bob, create nothing.
	for _, up := range [][2]string{{"nosuch", "x"}, {"bob", "wrong"}, {"Bob", "bobpw"}} {
		if r := pop3Login(t, addr, up[0], up[1]); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("login as %s with %s: %q", up[0], up[1], r)
		}
	}
	if ents, err := visible(state); err == nil && len(ents) > 0 || err != nil && !os.IsNotExist(err) {
		t.Fatalf("pop3state after failed logins only: %v %v", ents, err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// From another address: pop3d delays (and at last refuses
				// for a while) the failures of the address that makes them.
				if r := pop3LoginFrom(t, "127.0.0.3", addr, "bob", "wrong"); !strings.HasPrefix(r, "-ERR [AUTH]") && !strings.Contains(r, "too many failed logins") {
					t.Errorf("a wrong password for bob: %q", r)
					return
				}
				wrong.Add(1)
			}
		}()
	}
	start := time.Now()
	ok := 0
	for i := range 10 {
		time.Sleep(300 * time.Millisecond)
		if r := pop3Login(t, addr, "bob", "bobpw"); strings.HasPrefix(r, "+OK") {
			ok++
		} else {
			t.Errorf("bob's login %d of 10 during the loop: %q", i+1, r)
		}
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("bob logged in %d of 10 times in %v while %d wrong passwords were tried", ok, took.Round(time.Millisecond), wrong.Load())
	if wrong.Load() == 0 {
		t.Fatal("the loop of wrong passwords never got an answer")
	}
	if ents, _ := visible(state); len(ents) != 1 || ents[0].Name() != "bob" {
		t.Fatalf("pop3state holds %v, want only bob", ents)
	}
}
