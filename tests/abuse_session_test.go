package tests

import (
	"bufio"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// The session limits of these tests: small, so that a test takes seconds.
const (
	testPerAddr  = 10
	testLifetime = 5 * time.Second
	testAuthTime = 2 * time.Second
)

// limitsEnv is a deployment with a store and an agent on one
// configuration, with the session limits above.
func limitsEnv(t *testing.T) *env {
	e := newEnv(t, "alice")
	e.setConf("me", "example.net")
	writePasswords(t, e, "alice", "bob")
	spool := filepath.Join(t.TempDir(), "agent")
	os.MkdirAll(filepath.Join(spool, "bob"), 0o700)
	e.vars = append(e.vars, "IM2000_AGENT="+spool)
	e.setConf("sessionsperaddr", strconv.Itoa(testPerAddr))
	e.setConf("sessionlifetime", strconv.Itoa(int(testLifetime/time.Second)))
	e.setConf("authtimeout", strconv.Itoa(int(testAuthTime/time.Second)))
	return e
}

// serve starts prog on a loopback port, listening itself or under
// tcpserver (at most 40 processes at once), and returns its address.
func serve(t *testing.T, e *env, mode, prog string, args ...string) (string, *syncBuffer) {
	port := strconv.Itoa(freePort(t))
	addr := "127.0.0.1:" + port
	if mode == "tcpserver" {
		tcpserver, err := exec.LookPath("tcpserver")
		if err != nil {
			t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
		}
		_, logs := daemonEnv(t, e.vars, addr, tcpserver, append([]string{"-RHl0", "-c", "40", "127.0.0.1", port, filepath.Join(bin, prog)}, args...)...)
		return addr, logs
	}
	_, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, prog), append([]string{"-l", addr, "-c", "40"}, args...)...)
	return addr, logs
}

// connFrom connects from the loopback address from (127.0.0.2: another
// client than the 127.0.0.1 of the holders).
func connFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return d.Dial("tcp", addr)
}

// holder is one of the sessions an attacker holds open.
type holder struct {
	refused    bool      // told errorserviceshutdown at once
	served     int       // commands answered
	last       uint64    // the status of the last answer
	first, end time.Time // the first answer, and the server closing the session
}

// held is how long the server kept the session, from its first answer: a
// process under tcpserver may start late on a loaded machine, and the
// session's lifetime counts from its start.
func (h holder) held() time.Duration { return h.end.Sub(h.first) }

// maxOverlap is the most holders that were in at the same time. A
// session's end is seen by its holder a moment after the server let go of
// its slot, and another may have taken the slot meanwhile (on a loaded
// machine, a long moment): ends are taken a second early.
func maxOverlap(hs []holder) int {
	most := 0
	for _, a := range hs {
		n := 0
		for _, b := range hs {
			if !b.first.After(a.first) && b.end.Add(-time.Second).After(a.first) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// hold opens a session from 127.0.0.1 and sends cmd every 500 ms until the
// server refuses or closes it, or stop.
func hold(p *wire.Protocol, addr string, cmd wire.Body, stop <-chan struct{}) holder {
	var h holder
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return h
	}
	defer conn.Close()
	c := session.NewClient(conn, p, 10*time.Second)
	for {
		pdu, err := c.Call(cmd)
		var se *session.StatusError
		if err != nil && !errors.As(err, &se) {
			h.end = time.Now()
			return h
		}
		if h.first.IsZero() {
			h.first = time.Now()
		}
		h.last = pdu.Status
		if pdu.Status == p.Status.Shutdown && h.served == 0 {
			h.refused = true
			return h
		}
		h.served++
		if pdu.ForceAbort && pdu.Status == p.Status.Timeout {
			h.end = time.Now()
			return h
		}
		select {
		case <-stop:
			return h
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// TestSessionHolders: 40 sessions held open from 127.0.0.1, each sending a
// small valid PDU every 500 ms, do not keep a client from 127.0.0.2 out of
// any of the four servers: only testPerAddr of them are let in, the rest
// are refused at once; and the server closes the ones it let in when their
// lifetime is over (before authentication: when their time to
// authenticate is). Under tcpserver, where each session is a process and
// the count is kept in lock files, and with the server listening itself.
func TestSessionHolders(t *testing.T) {
	type server struct {
		prog  string
		p     *wire.Protocol
		hold  wire.Body     // what a holder sends
		limit time.Duration // after which the server closes a holder
		// use checks that a client from 127.0.0.2 is served, and keeps
		// its session as long as the server lets it.
		use func(t *testing.T, c *session.Client) wire.Body
	}
	servers := []server{
		{"im2000-agentd", rnasp.Protocol, notify("nobody"), testLifetime, func(t *testing.T, c *session.Client) wire.Body {
			call(t, c, notify("bob"), rnasp.NoError, false)
			return notify("nobody")
		}},
		{"im2000-retrieved", msrap.Protocol, &msrap.QuerySize{ID: msgid.New()}, testLifetime, func(t *testing.T, c *session.Client) wire.Body {
			call(t, c, &msrap.QuerySize{ID: msgid.New()}, msrap.ErrorNoSuchMessage, false)
			return &msrap.QuerySize{ID: msgid.New()}
		}},
		{"im2000-queryd", rnaqp.Protocol, rnaqp.RetrieveAndClear{}, testAuthTime, func(t *testing.T, c *session.Client) wire.Body {
			call(t, c, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.NoError, false)
			return rnaqp.RetrieveAndClear{}
		}},
		{"im2000-submitd", msoap.Protocol, &msoap.Track{ID: msgid.New()}, testAuthTime, func(t *testing.T, c *session.Client) wire.Body {
			call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)
			return &msoap.Track{ID: msgid.New()}
		}},
	}
	for _, srv := range servers {
		for _, mode := range []string{"tcpserver", "listener"} {
			t.Run(srv.prog+"/"+mode, func(t *testing.T) {
				t.Parallel()
				e := limitsEnv(t)
				addr, logs := serve(t, e, mode, srv.prog)
				defer func() {
					if t.Failed() {
						t.Logf("server log:\n%s", logs.String())
					}
				}()
				time.Sleep(500 * time.Millisecond) // the readiness probe's session is over
				stop := make(chan struct{})
				defer close(stop)
				results := make(chan holder, 40)
				for range 40 {
					go func() { results <- hold(srv.p, addr, srv.hold, stop) }()
				}
				time.Sleep(time.Second) // the holders are in, or refused

				// A client from another address is served while they hold,
				// and keeps its session until its lifetime is over, counted
				// from its first answer (its process may start late).
				conn, err := connFrom("127.0.0.2", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				c := session.NewClient(conn, srv.p, 10*time.Second)
				again := srv.use(t, c)
				start := time.Now()
				var lastStatus uint64
				for {
					time.Sleep(500 * time.Millisecond)
					pdu, err := c.Call(again)
					var se *session.StatusError
					if err != nil && !errors.As(err, &se) {
						t.Fatalf("the client from 127.0.0.2 after %v: %v", time.Since(start), err)
					}
					if pdu.Status == srv.p.Status.Timeout && pdu.ForceAbort {
						lastStatus = pdu.Status
						break
					}
					if time.Since(start) > 3*testLifetime {
						t.Fatalf("the client from 127.0.0.2 was not closed after %v", time.Since(start))
					}
				}
				if took := time.Since(start); took < testLifetime/2 || took > testLifetime+3*time.Second {
					t.Errorf("the client from 127.0.0.2 was closed after %v (%s), want its lifetime %v", took, srv.p.StatusName(lastStatus), testLifetime)
				}

				// Under tcpserver a holder's process may start only once
				// others are gone (tcpserver -c 40), and then be let in: what
				// counts is that no more than testPerAddr were in at once.
				refused, closed := 0, 0
				var in []holder
				for range 40 {
					h := <-results
					switch {
					case h.refused:
						refused++
					case h.last == srv.p.Status.Timeout && h.held() > 0 && h.held() < srv.limit+3*time.Second:
						closed++
						in = append(in, h)
					default:
						t.Errorf("a holder: %d answers, the last %s, held %v; want closed after %v", h.served, srv.p.StatusName(h.last), h.held(), srv.limit)
					}
				}
				if refused+closed != 40 || refused == 0 || closed < testPerAddr || maxOverlap(in) > testPerAddr {
					t.Errorf("%d holders refused at once and %d closed at their limit, at most %d at once; want %d at once", refused, closed, maxOverlap(in), testPerAddr)
				}
				t.Logf("%d holders refused, %d closed after %v, at most %d at once", refused, closed, srv.limit, maxOverlap(in))
			})
		}
	}
}

// textHolder opens a session of a line protocol from 127.0.0.1 and sends
// NOOP every 500 ms until the server closes it; it returns the greeting,
// the last line, and when the session was greeted and closed.
func textHolder(addr string) (greet, last string, h holder) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err.Error(), h
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	greet, _ = r.ReadString('\n')
	h.first = time.Now()
	if !strings.HasPrefix(greet, "220") && !strings.HasPrefix(greet, "+OK") {
		h.end = h.first
		return greet, "", h
	}
	for {
		c.Write([]byte("NOOP\r\n"))
		line, err := r.ReadString('\n')
		if err != nil {
			h.end = time.Now()
			return greet, last, h
		}
		last = strings.TrimSpace(line)
		time.Sleep(500 * time.Millisecond)
	}
}

// TestTextSessionLimits: im2000-smtpd and im2000-pop3d, each under
// tcpserver and listening itself, let in testPerAddr sessions from one
// address and tell the rest so in their protocol; sessions that do not log
// in are closed when their time to authenticate is over; a logged-in
// session from another address is served, and closed when its lifetime is.
func TestTextSessionLimits(t *testing.T) {
	agent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	type server struct {
		prog     string
		tooMany  string // the refusal's start
		closing  string // the last line of a holder's start
		setup    func(e *env)
		login    func(t *testing.T, c net.Conn, r *bufio.Reader) // from the greeting on
		loggedIn string                                          // the answer to NOOP once logged in
	}
	servers := []server{
		{"im2000-smtpd", "421 4.7.0", "421 4.4.2", nil, func(t *testing.T, c net.Conn, r *bufio.Reader) {
			c.Write([]byte("EHLO client.example\r\n"))
			for {
				l, err := r.ReadString('\n')
				if err != nil || len(l) < 4 || l[3] != '-' {
					break
				}
			}
			c.Write([]byte("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw")) + "\r\n"))
			if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "235") {
				t.Fatalf("AUTH: %q", l)
			}
		}, "250"},
		{"im2000-pop3d", "-ERR [SYS/TEMP] too many sessions from your address", "-ERR [SYS/TEMP] autologout", func(e *env) {
			e.setConf("rna", agent.rnaqp)
			e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
		}, func(t *testing.T, c net.Conn, r *bufio.Reader) {
			for _, cmd := range []string{"USER bob", "PASS bobpw"} {
				c.Write([]byte(cmd + "\r\n"))
				if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
					t.Fatalf("%s: %q", cmd, l)
				}
			}
		}, "+OK"},
	}
	for _, srv := range servers {
		for _, mode := range []string{"tcpserver", "listener"} {
			t.Run(srv.prog+"/"+mode, func(t *testing.T) {
				t.Parallel()
				e := limitsEnv(t)
				if srv.setup != nil {
					srv.setup(e)
				}
				addr, logs := serve(t, e, mode, srv.prog)
				defer func() {
					if t.Failed() {
						t.Logf("server log:\n%s", logs.String())
					}
				}()
				time.Sleep(500 * time.Millisecond) // the readiness probe's session is over
				type result struct {
					greet, last string
					h           holder
				}
				results := make(chan result, 20)
				var wg sync.WaitGroup
				for range 20 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						g, l, h := textHolder(addr)
						results <- result{g, l, h}
					}()
				}
				time.Sleep(time.Second)

				c, err := connFrom("127.0.0.2", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * testLifetime))
				r := bufio.NewReader(c)
				if g, _ := r.ReadString('\n'); strings.HasPrefix(g, "-ERR") || strings.HasPrefix(g, "4") {
					t.Fatalf("the client from 127.0.0.2 was greeted %q", g)
				}
				start := time.Now() // its process may start late: counted from the greeting
				srv.login(t, c, r)
				var last string
				for {
					time.Sleep(500 * time.Millisecond)
					c.Write([]byte("NOOP\r\n"))
					l, err := r.ReadString('\n')
					if err != nil {
						break
					}
					last = strings.TrimSpace(l)
				}
				if took := time.Since(start); took < testLifetime/2 || took > testLifetime+3*time.Second || !strings.HasPrefix(last, srv.closing) {
					t.Errorf("the logged-in client from 127.0.0.2 was closed after %v with %q, want its lifetime %v", took, last, testLifetime)
				}

				wg.Wait()
				close(results)
				// As in TestSessionHolders: what counts is how many were in
				// at once, and that each was closed at its time to log in.
				refused, closed := 0, 0
				var in []holder
				for r := range results {
					switch {
					case strings.HasPrefix(r.greet, srv.tooMany):
						refused++
					case strings.HasPrefix(r.last, srv.closing) && r.h.held() > 0 && r.h.held() < testAuthTime+3*time.Second:
						closed++
						in = append(in, r.h)
					default:
						t.Errorf("a holder: greeted %q, last %q, held %v", r.greet, r.last, r.h.held())
					}
				}
				if refused+closed != 20 || refused == 0 || closed < testPerAddr || maxOverlap(in) > testPerAddr {
					t.Errorf("%d refused and %d closed before logging in, at most %d at once; want %d at once", refused, closed, maxOverlap(in), testPerAddr)
				}
				t.Logf("%d refused, %d closed after %v without logging in, at most %d at once", refused, closed, testAuthTime, maxOverlap(in))
			})
		}
	}
}
