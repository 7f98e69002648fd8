package tests

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/session"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/rnaqp"
)

// netns makes a network namespace joined to this one by a veth pair and
// returns its name, the host side's address and the namespace's: a client
// there reaches the host's servers from an address that is not loopback,
// as one across a network would. Needs root (as tcpdump does); removed
// when the test ends.
func netns(t *testing.T) (ns, hostIP, nsIP string) {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip (iproute2) is not installed: run tests/deps.sh")
	}
	pid := os.Getpid() % 100000
	ns = fmt.Sprintf("im2000test%d", pid)
	hostSide, nsSide := fmt.Sprintf("im2kh%d", pid), fmt.Sprintf("im2kn%d", pid)
	net3 := fmt.Sprintf("10.231.%d", pid%250)
	hostIP, nsIP = net3+".1", net3+".2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s (the test needs root for a network namespace)", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command(ip, "link", "del", hostSide).Run() // takes its peer with it
		exec.Command(ip, "netns", "del", ns).Run()
	})
	run("netns", "add", ns)
	run("link", "add", hostSide, "type", "veth", "peer", "name", nsSide)
	run("link", "set", nsSide, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", hostSide)
	run("link", "set", hostSide, "up")
	run("netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", nsSide)
	run("netns", "exec", ns, "ip", "link", "set", nsSide, "up")
	run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return ns, hostIP, nsIP
}

// dialInNetns connects to addr from inside the namespace ns: the socket is
// made on an OS thread that joined it. The thread is never unlocked, so it
// ends with its goroutine instead of going back to the pool in the wrong
// namespace.
func dialInNetns(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// lines is a text protocol's client side with a deadline on every read.
type lines struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newLines(t *testing.T, c net.Conn) *lines { return &lines{t, c, bufio.NewReader(c)} }

func (l *lines) send(line string) {
	l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := l.c.Write([]byte(line + "\r\n")); err != nil {
		l.t.Fatalf("%q: %v", line, err)
	}
}

func (l *lines) line() string {
	l.t.Helper()
	l.c.SetDeadline(time.Now().Add(10 * time.Second))
	s, err := l.r.ReadString('\n')
	if err != nil {
		l.t.Fatalf("reading: %v (so far %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

// smtp reads one reply, of as many lines as it has.
func (l *lines) smtp() string {
	l.t.Helper()
	var b strings.Builder
	for {
		s := l.line()
		b.WriteString(s + "\n")
		if len(s) < 4 || s[3] != '-' {
			return b.String()
		}
	}
}

// pop reads a multi-line POP3 answer up to its ".".
func (l *lines) pop() string {
	l.t.Helper()
	var b strings.Builder
	for s := l.line(); s != "."; s = l.line() {
		b.WriteString(s + "\n")
		if strings.HasPrefix(s, "-ERR") {
			break
		}
	}
	return b.String()
}

// starttls makes the connection TLS, verifying the server against ca.
func (l *lines) starttls(cfg *tls.Config) {
	l.t.Helper()
	tc := tls.Client(l.c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		l.t.Fatalf("TLS handshake: %v", err)
	}
	l.c, l.r = tc, bufio.NewReader(tc)
}

// TestTLSClearAuthRemote: a client on another network (a namespace joined
// by a veth pair) may not send a password in cleartext: MSOAP and RNAQP
// Authenticate are answered errornotpermitted, SMTP hides AUTH and answers
// 538, POP3 hides USER and answers -ERR [AUTH], each logged with what to
// do. Over TLS (the -tls form, STARTTLS, STLS) the same client logs in,
// and with cleartextauth set so it does in cleartext.
func TestTLSClearAuthRemote(t *testing.T) {
	ns, hostIP, nsIP := netns(t)
	e := limitsEnv(t)
	e.setConf("authtimeout", "30")
	ca := withTLS(t, e, hostIP)
	e.setConf("rna", "127.0.0.1:1")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: hostIP}
	start := func(prog string, args ...string) (string, *syncBuffer) {
		addr := net.JoinHostPort(hostIP, strconv.Itoa(freePort(t)))
		_, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, prog), append([]string{"-l", addr}, args...)...)
		return addr, logs
	}
	dial := func(addr string) net.Conn {
		t.Helper()
		c, err := dialInNetns(ns, addr)
		if err != nil {
			t.Fatalf("from the namespace to %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refusedLogged := func(logs *syncBuffer, what string) {
		t.Helper()
		// from nsIP: the client really was in the namespace
		await(t, 5*time.Second, what+" logged for "+nsIP, func() bool {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, nsIP+":") && strings.Contains(l, what) {
					return true
				}
			}
			return false
		})
	}

	// MSOAP and RNAQP.
	submitd, submitdLog := start("im2000-submitd")
	submitdTLS, _ := start("im2000-submitd", "-tls")
	queryd, querydLog := start("im2000-queryd")
	c := session.NewClient(dial(submitd), msoap.Protocol, 10*time.Second)
	call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.ErrorNotPermitted, false)
	refusedLogged(submitdLog, "im2000-submitd: warning: cleartext refused: ")
	c = session.NewClient(tls.Client(dial(submitdTLS), cfg), msoap.Protocol, 10*time.Second)
	call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)
	c = session.NewClient(dial(queryd), rnaqp.Protocol, 10*time.Second)
	call(t, c, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.ErrorNotPermitted, false)
	refusedLogged(querydLog, "Authenticate refused")

	// SMTP: no AUTH before STARTTLS, 538 if tried; after it, AUTH works.
	smtpd, smtpdLog := start("im2000-smtpd")
	s := newLines(t, dial(smtpd))
	s.smtp()
	s.send("EHLO client.example")
	if r := s.smtp(); strings.Contains(r, "AUTH") || !strings.Contains(r, "STARTTLS") {
		t.Fatalf("EHLO in cleartext from afar:\n%s", r)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))
	s.send("AUTH PLAIN " + plain)
	if r := s.smtp(); !strings.HasPrefix(r, "538 5.7.11") {
		t.Fatalf("AUTH in cleartext from afar: %s", r)
	}
	refusedLogged(smtpdLog, "im2000-smtpd: warning: cleartext password refused: ")
	s.send("STARTTLS")
	if r := s.smtp(); !strings.HasPrefix(r, "220") {
		t.Fatalf("STARTTLS: %s", r)
	}
	s.starttls(cfg)
	s.send("EHLO client.example")
	if r := s.smtp(); !strings.Contains(r, "AUTH PLAIN") || strings.Contains(r, "STARTTLS") {
		t.Fatalf("EHLO after STARTTLS:\n%s", r)
	}
	s.send("AUTH PLAIN " + plain)
	if r := s.smtp(); !strings.HasPrefix(r, "235") {
		t.Fatalf("AUTH after STARTTLS: %s", r)
	}

	// POP3: no USER before STLS; after it, USER is taken.
	pop3d, pop3dLog := start("im2000-pop3d")
	p := newLines(t, dial(pop3d))
	p.line()
	p.send("CAPA")
	if r := p.pop(); strings.Contains(r, "USER") || !strings.Contains(r, "STLS") {
		t.Fatalf("CAPA in cleartext from afar:\n%s", r)
	}
	p.send("USER bob")
	if r := p.line(); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Fatalf("USER in cleartext from afar: %s", r)
	}
	refusedLogged(pop3dLog, "im2000-pop3d: warning: cleartext password refused: ")
	p.send("STLS")
	if r := p.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("STLS: %s", r)
	}
	p.starttls(cfg)
	p.send("CAPA")
	if r := p.pop(); !strings.Contains(r, "USER") || strings.Contains(r, "STLS") {
		t.Fatalf("CAPA after STLS:\n%s", r)
	}
	p.send("USER bob")
	if r := p.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("USER after STLS: %s", r)
	}

	// The admin's explicit setting lets cleartext passwords in.
	e.setConf("cleartextauth", "1")
	queryd2, _ := start("im2000-queryd")
	c = session.NewClient(dial(queryd2), rnaqp.Protocol, 10*time.Second)
	call(t, c, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.NoError, false)
}
