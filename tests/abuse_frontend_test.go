package tests

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/wire/rnaqp"
)

// Regression tests from the second review of issue 15: authentication
// through front ends (pop3d and smtpd check passwords at another server,
// which sees them all come from one address).

// TestQuerydNotServedNoOracle: queryd, an account with a password but no
// spool (alice): the right password fails exactly as a wrong one does,
// after the failure delay, not at once.
func TestQuerydNotServedNoOracle(t *testing.T) {
	e := limitsEnv(t)
	e.setConf("authdelay", "800")
	e.setConf("authmaxdelay", "800")
	addr, _ := serve(t, e, "listener", "im2000-queryd")
	for _, pw := range []string{"wrong", "alicepw"} {
		time.Sleep(time.Second) // the previous answer's spacing is over
		c := dialProto(t, rnaqp.Protocol, addr)
		s := time.Now()
		st := authenticate(t, c, &rnaqp.Authenticate{Account: "alice", Password: pw})
		took := time.Since(s)
		t.Logf("%s: %v %s", pw, took, rnaqp.Protocol.StatusName(st))
		if st != rnaqp.ErrorNotAuthenticated || took < 600*time.Millisecond {
			t.Errorf("password %q of an account without a spool: %s after %v, want errornotauthenticated after the delay", pw, rnaqp.Protocol.StatusName(st), took)
		}
	}
}

// frontEnd makes 127.0.0.1, where pop3d connects from, a front end of
// ag's queryd (authfrontends), as im2000-pop3d(8) asks, and starts queryd
// again with it.
func frontEnd(t *testing.T, ag *agentHost) {
	ag.setConf("authfrontends", "127.0.0.1")
	ag.procs[1].Process.Kill()
	ag.procs[1].Wait()
	ag.procs[1], _ = daemonEnv(t, ag.vars, ag.rnaqp, filepath.Join(bin, "im2000-queryd"), "-l", ag.rnaqp)
}

// visible lists dir without its dot entries (pop3d's .authfail, .sessions).
func visible(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	var out []os.DirEntry
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e)
		}
	}
	return out, err
}

// pop3Say writes line (if any) and reads one reply line.
func pop3Say(c net.Conn, r *bufio.Reader, line string) string {
	if line != "" {
		c.Write([]byte(line + "\r\n"))
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	s, _ := r.ReadString('\n')
	return strings.TrimSpace(s)
}

// TestPOP3GuessesDoNotLockOut: ten POP3 sessions from one address looping
// wrong passwords for bob keep nobody else out: carol, from another
// address, logs in every time. pop3d delays the guesser by its own
// address (and refuses at once what runs too far ahead); queryd lists
// pop3d's address in authfrontends and does not delay it.
func TestPOP3GuessesDoNotLockOut(t *testing.T) {
	ag := newAgentHostFor(t, "listener", "example.net", "", "bob", "carol")
	frontEnd(t, ag)
	pe := newEnv(t, "bob")
	pe.setConf("rna", ag.rnaqp)
	pe.setConf("pop3state", t.TempDir())
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, logs := daemonEnv(t, pe.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr)
	stop := make(chan struct{})
	var checked, refused atomic.Int64
	for range 10 {
		go func() {
			c, err := connFrom("127.0.0.3", addr)
			if err != nil {
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			pop3Say(c, r, "")
			for {
				select {
				case <-stop:
					return
				default:
				}
				pop3Say(c, r, "USER bob")
				switch a := pop3Say(c, r, "PASS guess"); {
				case strings.HasPrefix(a, "-ERR [AUTH]"):
					checked.Add(1)
				case strings.HasPrefix(a, "-ERR [SYS/TEMP]"):
					refused.Add(1)
				default:
					return
				}
			}
		}()
	}
	time.Sleep(6 * time.Second)
	var answers []string
	for range 5 {
		c, err := connFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		pop3Say(c, r, "")
		pop3Say(c, r, "USER carol")
		answers = append(answers, pop3Say(c, r, "PASS carolpw"))
		pop3Say(c, r, "QUIT")
		c.Close()
		time.Sleep(500 * time.Millisecond)
	}
	close(stop) // the guessers end as their answers come (the last within twice authmaxdelay)
	t.Logf("carol while 127.0.0.3 guesses: %q; the guesser: %d checked, %d refused unchecked", answers, checked.Load(), refused.Load())
	for _, a := range answers {
		if !strings.HasPrefix(a, "+OK") {
			t.Fatalf("carol kept out: %q\n%s", answers, logs.String())
		}
	}
	// Default delays (250 ms doubling to 8 s, spaced per address): some ten
	// guesses are checked in these 9 s, not hundreds.
	if checked.Load() > 30 || refused.Load() == 0 {
		t.Errorf("the guesser had %d guesses checked, %d refused: not delayed by its address at pop3d", checked.Load(), refused.Load())
	}
}

// TestPOP3InvalidNameCounted: a name that is no account name is refused
// after the failure delay, like any failure, not at once.
func TestPOP3InvalidNameCounted(t *testing.T) {
	ag := newAgentHostFor(t, "listener", "example.net", "", "bob")
	pe := newEnv(t, "bob")
	pe.setConf("rna", ag.rnaqp)
	pe.setConf("pop3state", t.TempDir())
	pe.setConf("authdelay", "700")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	daemonEnv(t, pe.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr)
	c, err := connFrom("127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	pop3Say(c, r, "")
	pop3Say(c, r, "USER ../etc")
	s := time.Now()
	a := pop3Say(c, r, "PASS x")
	if took := time.Since(s); !strings.HasPrefix(a, "-ERR [AUTH]") || took < 500*time.Millisecond {
		t.Errorf("invalid name: %q after %v, want -ERR [AUTH] after the delay", a, took)
	}
}

// TestPOP3NoTCPREMOTEIP: pop3d run per connection by a superserver that
// sets no TCPREMOTEIP (systemd-socket-activate --inetd): the address comes
// from the socket, and the cap per address holds.
func TestPOP3NoTCPREMOTEIP(t *testing.T) {
	e := limitsEnv(t)
	e.setConf("authtimeout", "60") // the sessions stay while the others connect
	e.setConf("sessionlifetime", "60")
	ag := newAgentHostFor(t, "listener", "example.net", "", "bob")
	e.setConf("rna", ag.rnaqp)
	e.setConf("pop3state", t.TempDir())
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var args []string
	for _, v := range e.vars {
		args = append(args, "-E", v)
	}
	_, logs := daemonEnv(t, e.vars, addr, "/usr/bin/systemd-socket-activate", append(args, "--inetd", "-a", "-l", addr, filepath.Join(bin, "im2000-pop3d"))...)
	time.Sleep(500 * time.Millisecond) // the readiness probe's session is over
	refused := 0
	var greetings []string
	for i := 0; i < 2*testPerAddr; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		if strings.Contains(l, "too many") {
			refused++
		}
		greetings = append(greetings, strings.TrimSpace(l))
	}
	if refused < testPerAddr {
		t.Errorf("%d sessions from one address without TCPREMOTEIP, cap %d: %d refused: %q\n%s", 2*testPerAddr, testPerAddr, refused, greetings, logs.String())
	}
}

// TestSMTPRemoteStoreTemporary: smtpd with a remote store that cannot be
// reached answers AUTH with 454 (try again), not 535 (wrong password).
func TestSMTPRemoteStoreTemporary(t *testing.T) {
	e := newEnv(t, "alice")
	os.Remove(e.store)
	e.setConf("remote", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	e.setConf("sessiondir", t.TempDir())
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-smtpd"), "-l", addr)
	c := dialSMTP(t, addr)
	c.cmd("EHLO client.example")
	if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw"))); !strings.HasPrefix(r, "454") {
		t.Errorf("remote store unreachable: AUTH answered %q, want 454", r)
	}
}
