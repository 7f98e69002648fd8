// The hostile-peer tests of im2000-pop3d: a minimal POP3 client, and
// TestHostilePOP3.

package tests

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// pop3 is a minimal POP3 client.
type pop3 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *pop3 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &pop3{t: t, conn: c, r: bufio.NewReader(c)}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *pop3) line() string {
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("POP3: %v after %q", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *pop3) cmd(c string) string {
	if _, err := fmt.Fprintf(p.conn, "%s\r\n", c); err != nil {
		p.t.Fatal(err)
	}
	return p.line()
}

// multi reads a multi-line response's lines up to the dot.
func (p *pop3) multi() string {
	var b strings.Builder
	for l := p.line(); l != "."; l = p.line() {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func (p *pop3) login(user string) string {
	if r := p.cmd("USER " + user); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("USER: %q", r)
	}
	return p.cmd("PASS pw")
}

// TestHostilePOP3: one listening im2000-pop3d, users whose store or agent
// is hostile, and beside each a user whose peers behave and who reads his
// mail all the same.
func TestHostilePOP3(t *testing.T) {
	good := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: alice@example.org\r\nSubject: good\r\n\r\npop-good\r\n")
	})
	type popCase struct {
		hostileCase
		store bool   // the store misbehaves (else the agent)
		size  bool   // the notification states the size (else QuerySize is asked)
		retr  string // RETR 1's answer starts so (for a message listed)
	}
	var cases []popCase
	add := func(hc []hostileCase, store, size bool, retr string) {
		for _, c := range hc {
			cases = append(cases, popCase{c, store, size, retr})
		}
	}
	add(wrongAnswers[*msrap.QuerySize]("store/querysize", msrap.Protocol, 5), true, false, "")
	add(wrongAnswers[*msrap.Retrieve]("store/retrieve", msrap.Protocol, 4), true, true, "-ERR [SYS/TEMP]")
	add(retrieveCases("store/retrieve"), true, true, "-ERR [SYS/TEMP]")
	add(wrongAnswers[*msrap.Silence]("store/silence", msrap.Protocol, 2), true, true, "+OK")
	add(wrongAnswers[*rnaqp.Authenticate]("agent/authenticate", rnaqp.Protocol, 1), false, false, "")
	add(wrongAnswers[rnaqp.RetrieveAndClear]("agent/retrieveandclear", rnaqp.Protocol, 2), false, false, "")

	// One agent for all: user hN is case N's, gN behaves.
	stores := make([]*hostile.Server, len(cases))
	for i, c := range cases {
		bad := behaves
		if c.store {
			bad = c.bad
		}
		stores[i] = hostile.Start(t, msrap.Protocol, func() hostile.Handler {
			return bad(fakeStore("From: alice@example.org\r\nSubject: other\r\n\r\npop-other\r\n"))
		})
	}
	agent := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler {
		var h hostile.Handler
		return func(cmd wire.Body) hostile.Answer {
			if a, ok := cmd.(*rnaqp.Authenticate); ok && h == nil {
				var i int
				if _, err := fmt.Sscanf(a.Account[1:], "%d", &i); err != nil || i >= len(cases) {
					return refuse(rnaqp.Protocol)
				}
				h = fakeAgent(noteAt(good.Addr, 2, 0))
				if a.Account[0] == 'h' {
					c := cases[i]
					size := 0
					if c.size { // the true size: another one is refused
						size = len("From: alice@example.org\r\nSubject: other\r\n\r\npop-other\r\n")
					}
					h = fakeAgent(noteAt(stores[i].Addr, 1, size))
					if !c.store {
						h = c.bad(h)
					}
				}
			}
			if h == nil {
				return refuse(rnaqp.Protocol)
			}
			return h(cmd)
		}
	})
	e := newEnv(t, "pop")
	e.setConf("timeout", "1")
	e.setConf("rna", agent.Addr)
	// Every store is example.org's, so that their sender is verified.
	routes := "_msrap._tcp.example.org " + good.Addr
	for _, s := range stores {
		routes += " " + s.Addr
	}
	e.setConf("routes", routes+"\n")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	e.setConf("sessionsperaddr", "0") // every user here comes from 127.0.0.1, side by side
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr, "-c", "500")

	sideBySide(t, len(cases), func(i int) string { return cases[i].name }, func(t *testing.T, i int) {
		c := cases[i]
		p := dialPOP3(t, addr)
		r := p.login(fmt.Sprintf("h%d", i))
		switch {
		case !c.store:
			if !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
				t.Errorf("login with a hostile agent: %q", r)
			}
		case c.retr == "":
			if r != fmt.Sprintf("+OK h%d has 0 messages", i) {
				t.Errorf("login with a hostile store (size): %q", r)
			}
		default:
			if r != fmt.Sprintf("+OK h%d has 1 messages", i) {
				t.Fatalf("login: %q", r)
			}
			got := p.cmd("RETR 1")
			if !strings.HasPrefix(got, c.retr) {
				t.Errorf("RETR from a hostile store: %q, want %q", got, c.retr)
			}
			if strings.HasPrefix(got, "+OK") {
				p.multi()
				p.cmd("DELE 1")
			}
		}
		if c.store {
			if q := p.cmd("QUIT"); !strings.HasPrefix(q, "+OK") || strings.HasPrefix(q, "+OK 1 ") {
				t.Errorf("QUIT: %q", q)
			}
		}

		// Meanwhile, another user reads his mail.
		p = dialPOP3(t, addr)
		if r := p.login(fmt.Sprintf("g%d", i)); r != fmt.Sprintf("+OK g%d has 1 messages", i) {
			t.Fatalf("the user whose peers behave: %q", r)
		}
		if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "pop-good") {
			t.Errorf("RETR from the store that behaves: %q", r)
		}
		p.cmd("QUIT")
	})
	if n := len(clearFailure.FindAllString(logs.String(), -1)); n < len(cases) {
		t.Errorf("pop3d logged %d clear failures for %d hostile cases:\n%s", n, len(cases), logs.String())
	}
}
