package tests

import (
	"bufio"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"im2000/lib/store"
)

func startSMTPD(t *testing.T) (*env, string) {
	e := newEnv(t, "alice")
	writePasswords(t, e, "alice")
	e.setConf("databytes", strconv.Itoa(8<<20))
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	port := strconv.Itoa(freePort(t))
	daemonEnv(t, e.vars, "127.0.0.1:"+port, tcpserver, "-RHl0", "127.0.0.1", port, filepath.Join(bin, "im2000-smtpd"), "-t", "5")
	return e, "127.0.0.1:" + port
}

func archived(t *testing.T, e *env) []*store.Envelope {
	s, _ := store.Open(e.store)
	a, _ := s.Account("alice")
	ids, _ := a.Messages()
	var out []*store.Envelope
	for _, id := range ids {
		m, err := a.Open(id)
		if err == nil {
			out = append(out, m.Env)
			m.Close()
		}
	}
	return out
}

func TestSMTPSubmission(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	e, addr := startSMTPD(t)
	host, port, _ := net.SplitHostPort(addr)
	swaks := func(args ...string) (string, error) {
		out, err := exec.Command("swaks", append([]string{"--server", host, "--port", port, "--auth-user", "alice", "--auth-password", "alicepw"}, args...)...).CombinedOutput()
		return string(out), err
	}
	big := filepath.Join(t.TempDir(), "big.eml")
	var b strings.Builder
	b.WriteString("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: five megabytes\r\n\r\n")
	for b.Len() < 5<<20 {
		b.WriteString("0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n")
	}
	os.WriteFile(big, []byte(b.String()), 0o644)
	if out, err := swaks("--auth", "PLAIN", "--pipeline", "--to", "bob@example.net,carol@example.com", "--data", "@"+big); err != nil || !strings.Contains(out, "250 2.0.0 OK: stored in your archive as ") {
		t.Fatalf("swaks PLAIN, pipelining, 5 MB: %v\n%s", err, out[max(0, len(out)-2000):])
	}
	if out, err := swaks("--auth", "LOGIN", "--from", "alice@example.org", "--to", "bob@example.net"); err != nil || !strings.Contains(out, "no bounce will come") {
		t.Fatalf("swaks LOGIN: %v\n%s", err, out)
	}
	if out, _ := swaks("--auth", "PLAIN", "--to", "bob..x@example.net"); !strings.Contains(out, "553 5.1.3") {
		t.Fatalf("a malformed recipient was not refused:\n%s", out)
	}
	if out, _ := swaks("--auth", "PLAIN", "--auth-password", "wrong", "--to", "bob@example.net"); !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("a wrong password was not refused:\n%s", out)
	}
	py := `import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.login("alice", "alicepw")
s.sendmail("alice@example.org", ["bob@example.net", "carol@example.com"], "Subject: from smtplib\r\n\r\nhello\r\n")
s.quit()
`
	if out, err := exec.Command("/usr/bin/python3", "-c", py, host, port).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	envs := archived(t, e)
	if len(envs) != 3 {
		t.Fatalf("%d messages in the archive, want 3", len(envs))
	}
	for _, env := range envs {
		if env.Sender.String() != "alice@example.org" {
			t.Errorf("sender %s, want the authenticated account", env.Sender)
		}
	}
	if len(envs[0].Recipients) != 2 || len(envs[2].Recipients) != 2 {
		t.Errorf("recipients %v / %v", envs[0].Recipients, envs[2].Recipients)
	}
	r := e.run("", "im2000-status")
	if !strings.Contains(r.stdout, "five megabytes") || !strings.Contains(r.stdout, "from smtplib") {
		t.Errorf("im2000-status:\n%s", r.stdout)
	}
}

// greeting connects to a server of a line protocol and returns its first
// line.
func greeting(t *testing.T, addr string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// smtpConn is a raw client for the hostile cases.
type smtpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialSMTP connects and reads the greeting, trying again for a while on a
// 421 (a session limit whose slot is not free yet, as after the readiness
// probe).
func dialSMTP(t *testing.T, addr string) *smtpConn { return dialSMTPFrom(t, addr, "") }

// dialSMTPFrom is dialSMTP from the local address src ("": any), as a
// second client of a per-address limit.
func dialSMTPFrom(t *testing.T, addr, src string) *smtpConn {
	var d net.Dialer
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	var s *smtpConn
	await(t, 5*time.Second, "a session at "+addr, func() bool {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		s = &smtpConn{t: t, c: c, r: bufio.NewReader(c)}
		if strings.HasPrefix(s.reply(), "421") {
			c.Close()
			return false
		}
		return true
	})
	t.Cleanup(func() { s.c.Close() })
	return s
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (s *smtpConn) reply() string {
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "EOF"
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimSpace(line)
		}
	}
}

func (s *smtpConn) cmd(line string) string {
	s.c.Write([]byte(line + "\r\n"))
	return s.reply()
}

func (s *smtpConn) login(password string) string {
	s.cmd("EHLO client.example")
	return s.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+password)))
}

func TestSMTPHostile(t *testing.T) {
	e, addr := startSMTPD(t)

	c := dialSMTP(t, addr)
	c.cmd("EHLO client.example")
	if r := c.cmd("MAIL FROM:<alice@example.org>"); !strings.HasPrefix(r, "502") && !strings.HasPrefix(r, "530") {
		t.Errorf("MAIL before AUTH: %s", r)
	}

	c = dialSMTP(t, addr)
	c.login("alicepw")
	c.cmd("MAIL FROM:<alice@example.org>")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "5") {
		t.Errorf("DATA without RCPT: %s", r)
	}

	c = dialSMTP(t, addr)
	c.login("alicepw")
	c.cmd("MAIL FROM:<alice@example.org>")
	c.cmd("RCPT TO:<bob@example.net>")
	c.cmd("DATA")
	c.c.Write([]byte("Subject: long\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n.\r\n"))
	if r := c.reply(); !strings.HasPrefix(r, "500 5.5.2") {
		t.Errorf("an overlong line: %s", r)
	}

	c = dialSMTP(t, addr)
	c.login("alicepw")
	c.cmd("MAIL FROM:<alice@example.org>")
	c.cmd("RCPT TO:<bob@example.net>")
	c.cmd("DATA")
	c.c.Write([]byte("Subject: cut off\r\n\r\nhalf a messa"))
	c.c.Close() // the client drops mid-DATA

	var took []time.Duration
	c = dialSMTP(t, addr)
	c.cmd("EHLO client.example")
	for i := 0; i < 3; i++ {
		start := time.Now()
		if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00guess"))); !strings.HasPrefix(r, "535") {
			t.Fatalf("wrong AUTH: %s", r)
		}
		took = append(took, time.Since(start))
	}
	if took[2] < took[0]*3 {
		t.Errorf("failed AUTHs are not slowed down: %v", took)
	}
	time.Sleep(500 * time.Millisecond)
	if envs := archived(t, e); len(envs) != 0 {
		t.Fatalf("hostile sessions left %d messages", len(envs))
	}
	if ents, _ := os.ReadDir(filepath.Join(e.store, "alice", "tmp")); len(ents) != 0 {
		t.Fatalf("a dropped DATA left %d temporary files", len(ents))
	}
	// And the server still serves.
	c = dialSMTP(t, addr)
	if r := c.login("alicepw"); !strings.HasPrefix(r, "235") {
		t.Fatalf("after all that, AUTH: %s", r)
	}
}

// TestSMTPRemote runs im2000-smtpd for a store at another host: AUTH and
// the submission both go over MSOAP.
func TestSMTPRemote(t *testing.T) {
	h := newStoreHost(t, "tcpserver", nil)
	e := newEnv(t, "alice")
	e.setConf("remote", h.msoap)
	e.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
	port := strconv.Itoa(freePort(t))
	daemonEnv(t, e.vars, "127.0.0.1:"+port, filepath.Join(bin, "im2000-smtpd"), "-l", "127.0.0.1:"+port, "-c", "1")
	c := dialSMTP(t, "127.0.0.1:"+port)
	if r := c.login("wrong"); !strings.HasPrefix(r, "535") {
		t.Fatalf("a wrong password at the remote store: %s", r)
	}
	if r := greeting(t, "127.0.0.1:"+port); !strings.HasPrefix(r, "421 4.3.2") {
		t.Fatalf("a second session over -c 1: %q", r)
	}
	if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))); !strings.HasPrefix(r, "235") {
		t.Fatalf("AUTH: %s", r)
	}
	c.cmd("MAIL FROM:<alice@example.org>")
	c.cmd("RCPT TO:<bob@example.net>")
	c.cmd("DATA")
	if r := c.cmd("Subject: via the remote store\r\n\r\nhi\r\n."); !strings.HasPrefix(r, "250 2.0.0 OK: stored") {
		t.Fatalf("DATA: %s", r)
	}
	c.cmd("MAIL FROM:<alice@example.org>")
	c.cmd("RCPT TO:<bob@example.net>")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("second DATA: %s", r)
	}
	if r := c.cmd("Subject: no\r\n\r\n" + strings.Repeat("z", 10) + "\r\n."); !strings.HasPrefix(r, "250") {
		t.Fatalf("second message: %s", r)
	}
	if envs := archived(t, h.env); len(envs) != 2 || envs[0].Sender.String() != "alice@example.org" {
		t.Fatalf("at the remote store: %d messages", len(envs))
	}
}
