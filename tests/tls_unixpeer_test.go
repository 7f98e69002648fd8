package tests

import (
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/session"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/rnaqp"
)

// runOn starts prog of bin with stdin and stdout on one end of a
// connection and returns the client's end: "socketpair" is a Unix-domain
// socketpair, what socat TCP-LISTEN:110,fork EXEC:im2000-pop3d gives a
// server (socat sets no TCPREMOTEIP); "pipes" is two pipes, a local user
// running the server by hand. The process is stopped, by its pid, when the
// test ends.
func runOn(t *testing.T, how string, vars []string, prog string, args ...string) (net.Conn, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	cmd.Env = vars
	logs := &syncBuffer{}
	cmd.Stderr = logs
	var client net.Conn
	var theirs []*os.File
	switch how {
	case "socketpair":
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		mine, server := os.NewFile(uintptr(fds[0]), "client"), os.NewFile(uintptr(fds[1]), "server")
		if client, err = net.FileConn(mine); err != nil {
			t.Fatal(err)
		}
		mine.Close()
		cmd.Stdin, cmd.Stdout = server, server
		theirs = []*os.File{server}
	case "pipes":
		inR, inW, err1 := os.Pipe()
		outR, outW, err2 := os.Pipe()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		cmd.Stdin, cmd.Stdout = inR, outW
		client = pipePair{outR, inW}
		theirs = []*os.File{inR, outW}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range theirs {
		f.Close()
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		checkLog(t, prog, logs.String())
		if t.Failed() {
			t.Logf("%s's log:\n%s", prog, logs.String())
		}
	})
	return client, logs
}

// unixPeerEnv is a configuration every server of the test can run with:
// a certificate (so STARTTLS and STLS are offered), bob's and alice's
// passwords, an agent that is never asked.
func unixPeerEnv(t *testing.T) *env {
	e := limitsEnv(t)
	e.setConf("authtimeout", "30")
	withTLS(t, e)
	e.setConf("rna", "127.0.0.1:1")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	e.setConf("imapstate", filepath.Join(t.TempDir(), "imap"))
	return e
}

// TestTLSClearAuthUnixSocket: a server whose stdin is a socket without an
// IP address (a Unix-domain socketpair, as socat's EXEC gives it, with no
// TCPREMOTEIP) takes no password in cleartext: the program that relays
// into the socket may have it from anywhere. Only stdin that is no socket
// at all (pipes: a local user) stands for a local user. The review found
// all five servers taking passwords over the socketpair.
func TestTLSClearAuthUnixSocket(t *testing.T) {
	e := unixPeerEnv(t)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))

	t.Run("pop3d", func(t *testing.T) {
		c, logs := runOn(t, "socketpair", e.vars, "im2000-pop3d")
		p := newLines(t, c)
		p.line()
		p.send("CAPA")
		if r := p.pop(); strings.Contains(r, "USER") || strings.Contains(r, "SASL") || !strings.Contains(r, "STLS") {
			t.Fatalf("CAPA in cleartext on a Unix socket:\n%s", r)
		}
		p.send("USER bob")
		if r := p.line(); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("USER in cleartext on a Unix socket: %s", r)
		}
		p.send("AUTH PLAIN " + plain)
		if r := p.line(); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("AUTH in cleartext on a Unix socket: %s", r)
		}
		await(t, 5*time.Second, "the refusal logged", func() bool {
			return strings.Contains(logs.String(), "im2000-pop3d: warning: cleartext password refused: ") &&
				strings.Contains(logs.String(), ": USER: a password in cleartext from a non-loopback address")
		})
	})
	t.Run("smtpd", func(t *testing.T) {
		c, logs := runOn(t, "socketpair", e.vars, "im2000-smtpd")
		s := newLines(t, c)
		s.smtp()
		s.send("EHLO client.example")
		if r := s.smtp(); strings.Contains(r, "AUTH") || !strings.Contains(r, "STARTTLS") {
			t.Fatalf("EHLO in cleartext on a Unix socket:\n%s", r)
		}
		s.send("AUTH PLAIN " + plain)
		if r := s.smtp(); !strings.HasPrefix(r, "538 5.7.11") {
			t.Fatalf("AUTH in cleartext on a Unix socket: %s", r)
		}
		await(t, 5*time.Second, "the refusal logged", func() bool {
			return strings.Contains(logs.String(), "im2000-smtpd: warning: cleartext password refused: ") &&
				strings.Contains(logs.String(), ": AUTH: a password in cleartext from a non-loopback address")
		})
	})
	t.Run("imapd", func(t *testing.T) {
		c, _ := runOn(t, "socketpair", e.vars, "im2000-imapd")
		m := newLines(t, c)
		m.line()
		m.send("a CAPABILITY")
		caps := m.line()
		m.line() // a OK
		if !strings.Contains(caps, "LOGINDISABLED") || strings.Contains(caps, "AUTH=PLAIN") {
			t.Fatalf("capabilities in cleartext on a Unix socket: %s", caps)
		}
		m.send("b LOGIN bob bobpw")
		if r := m.line(); !strings.HasPrefix(r, "b NO [PRIVACYREQUIRED]") {
			t.Fatalf("LOGIN in cleartext on a Unix socket: %s", r)
		}
	})
	t.Run("submitd", func(t *testing.T) {
		c, logs := runOn(t, "socketpair", e.vars, "im2000-submitd")
		sc := session.NewClient(c, msoap.Protocol, 10*time.Second)
		call(t, sc, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.ErrorNotPermitted, false)
		await(t, 5*time.Second, "the refusal logged", func() bool {
			return strings.Contains(logs.String(), "Authenticate refused")
		})
	})
	t.Run("queryd", func(t *testing.T) {
		c, _ := runOn(t, "socketpair", e.vars, "im2000-queryd")
		sc := session.NewClient(c, rnaqp.Protocol, 10*time.Second)
		call(t, sc, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.ErrorNotPermitted, false)
	})

	// What still lets a password in without TLS: pipes, a local user
	// (no TCPREMOTEIP); and a socket whose peer TCPREMOTEIP names as a
	// loopback address.
	t.Run("pipes", func(t *testing.T) {
		c, _ := runOn(t, "pipes", e.vars, "im2000-pop3d")
		p := newLines(t, c)
		p.line()
		p.send("CAPA")
		if r := p.pop(); !strings.Contains(r, "USER") {
			t.Fatalf("CAPA on a local user's pipes:\n%s", r)
		}
		p.send("USER bob")
		if r := p.line(); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("USER on a local user's pipes: %s", r)
		}
		q, _ := runOn(t, "pipes", e.vars, "im2000-queryd")
		sc := session.NewClient(q, rnaqp.Protocol, 10*time.Second)
		call(t, sc, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.NoError, false)
	})
	t.Run("loopback-named", func(t *testing.T) {
		vars := append(e.vars[:len(e.vars):len(e.vars)], "TCPREMOTEIP=127.0.0.1", "TCPREMOTEPORT=4000")
		c, _ := runOn(t, "socketpair", vars, "im2000-pop3d")
		p := newLines(t, c)
		p.line()
		p.send("USER bob")
		if r := p.line(); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("USER on a socket from TCPREMOTEIP=127.0.0.1: %s", r)
		}
	})
	// Pipes with a peer named elsewhere (a relay that hands pipes and sets
	// TCPREMOTEIP): the address decides.
	t.Run("pipes-remote-named", func(t *testing.T) {
		vars := append(e.vars[:len(e.vars):len(e.vars)], "TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=4000")
		c, _ := runOn(t, "pipes", vars, "im2000-pop3d")
		p := newLines(t, c)
		p.line()
		p.send("USER bob")
		if r := p.line(); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("USER on pipes from TCPREMOTEIP=192.0.2.7: %s", r)
		}
	})
}
