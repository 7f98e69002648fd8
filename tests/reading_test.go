package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// Bounded reading (issue 14; DESIGN-NOTES.md "Bounded reading"): a store
// that claims more than the reader takes, or sends more than it claims,
// costs fetch and pop3d no more than a page of memory and the entry is
// dropped; stores that never answer cost a run one timeout together; a
// store that closes its sessions still gets its messages read; an entry
// failing past maxlifetime is dropped.

// rssLimit is the peak resident set a reader may reach, whatever a store
// sends.
const rssLimit = 64 << 20

// agentOnce is an agent that behaves and hands out notes in its first
// session only: what a reader drops stays dropped.
func agentOnce(notes ...rnaqp.NotificationAndLocalData) func() hostile.Handler {
	var given atomic.Bool
	return func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			switch cmd.(type) {
			case *rnaqp.Authenticate:
				return hostile.Respond(rnaqp.AuthenticateOK{})
			case rnaqp.RetrieveAndClear:
				r := &rnaqp.RetrieveAndClearOK{}
				if given.CompareAndSwap(false, true) {
					r.Notifications = notes
				}
				return hostile.Respond(r)
			}
			return refuse(rnaqp.Protocol)
		}
	}
}

// floodStore is a store that claims size for every message and answers
// every retrieval with a full page (1 MiB), at whatever offset: it never
// stops sending. Its first page starts with a header.
func floodStore(size uint64) hostile.Handler {
	line := strings.Repeat("x", 62) + "\r\n"
	page := []byte(strings.Repeat(line, 1<<20/len(line)))
	first := append([]byte("From: alice@example.org\r\nSubject: flood\r\n\r\n"), page[:len(page)-64]...)
	return func(cmd wire.Body) hostile.Answer {
		switch c := cmd.(type) {
		case *msrap.Retrieve:
			data := page
			if c.Offset == 0 {
				data = first
			}
			return hostile.Respond(&msrap.RetrieveOK{Data: data, Size: size})
		case *msrap.QuerySize:
			return hostile.Respond(&msrap.QuerySizeOK{Size: size})
		case *msrap.Silence:
			return hostile.Respond(msrap.SilenceOK{})
		}
		return refuse(msrap.Protocol)
	}
}

// floods are the two ways of sending too much: a notification and a store
// claiming 2^62 octets (refused at the first answer), and a store stating
// 100 MiB and a bit under a databytes of 128 MiB, without a size in the
// notification, that goes on sending past it (refused at the end, after
// 100 MiB streamed: a reader holding it in memory would pass the limit).
var floods = []struct {
	name      string
	notified  int // 0: none
	size      uint64
	databytes string
}{
	{"claims-2^62", 1 << 62, 1 << 62, ""},
	{"sends-past-its-size", 0, 100<<20 + 12345, strconv.Itoa(128 << 20)},
}

// maxRSS is a finished process's peak resident set, in octets.
func maxRSS(t *testing.T, cmd *exec.Cmd) int64 {
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the child")
	}
	return ru.Maxrss << 10 // kilobytes on Linux
}

// runRSS runs a program like env.run and also returns its peak RSS.
func (e *env) runRSS(prog string, args ...string) (result, int64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, prog), args...)
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", prog, err)
	}
	checkLog(e.t, prog, errb.String())
	return result{code, out.String(), errb.String()}, maxRSS(e.t, cmd)
}

// readerEnv is bob's configuration for fetch and pop3d with the agent at
// agent, the stores at stores binding alice@example.org's domain.
func readerEnv(t *testing.T, agent string, stores ...string) *env {
	e := newEnv(t, "bob")
	e.setConf("rna", agent)
	e.setConf("password", "bobpw")
	e.setConf("routes", "_msrap._tcp.example.org "+strings.Join(stores, " ")+"\n")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	return e
}

// refusedLine is the log line of a refused entry.
func refusedLine(id byte, store string, size uint64) string {
	return fmt.Sprintf("refused ee%02x0000000000000000000000000000 from alice@example.org at %s: store's size %d,", id, store, size)
}

// TestBoundedFetch: im2000-fetch against stores that send too much.
func TestBoundedFetch(t *testing.T) {
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return floodStore(f.size) })
			agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, f.notified)))
			e := readerEnv(t, agent.Addr, store.Addr)
			if f.databytes != "" {
				e.setConf("databytes", f.databytes)
			}
			maildir := filepath.Join(t.TempDir(), "Maildir")
			r, rss := e.runRSS("im2000-fetch", "-d", maildir)
			t.Logf("peak RSS %d KiB; exit %d: %s", rss>>10, r.code, r.stderr)
			if rss >= rssLimit {
				t.Errorf("fetch's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
			}
			if r.code != 111 || !strings.Contains(r.stderr, refusedLine(1, store.Addr, f.size)) || !strings.Contains(r.stderr, "0 delivered, 0 kept for later, 1 dropped") {
				t.Errorf("fetch did not report the entry refused and dropped: exit %d", r.code)
			}
			for _, d := range []string{"new", "tmp"} {
				if ents, _ := os.ReadDir(filepath.Join(maildir, d)); len(ents) != 0 {
					t.Errorf("the Maildir's %s has %d files", d, len(ents))
				}
			}
			if r := e.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
				t.Errorf("still pending after the refusal: %q", r.stdout)
			}
		})
	}
}

// popPipe is a POP3 session with an im2000-pop3d on its standard input
// and output, as tcpserver runs it.
type popPipe struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	r   *bufio.Reader
	log bytes.Buffer
}

func startPOP3Pipe(t *testing.T, e *env) *popPipe {
	p := &popPipe{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	p.cmd = exec.CommandContext(ctx, filepath.Join(bin, "im2000-pop3d"))
	p.cmd.Env = append(e.vars, "TCPREMOTEIP=127.0.0.1")
	p.cmd.Stderr = &p.log
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.r = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *popPipe) line() string {
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("POP3: %v after %q; log:\n%s", err, l, p.log.String())
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *popPipe) cmd1(c string) string {
	fmt.Fprintf(p.in, "%s\r\n", c)
	return p.line()
}

// quit ends the session and returns pop3d's peak RSS.
func (p *popPipe) quit() int64 {
	p.cmd1("QUIT")
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("pop3d: %v; log:\n%s", err, p.log.String())
	}
	checkLog(p.t, "im2000-pop3d", p.log.String())
	return maxRSS(p.t, p.cmd)
}

// TestBoundedPOP3: im2000-pop3d (as under tcpserver) doing RETR against
// stores that send too much.
func TestBoundedPOP3(t *testing.T) {
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return floodStore(f.size) })
			agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, f.notified)))
			e := readerEnv(t, agent.Addr, store.Addr)
			if f.databytes != "" {
				e.setConf("databytes", f.databytes)
			}
			p := startPOP3Pipe(t, e)
			p.cmd1("USER bob")
			if r := p.cmd1("PASS bobpw"); r != "+OK bob has 1 messages" {
				t.Fatalf("login: %q", r)
			}
			if r := p.cmd1("RETR 1"); !strings.HasPrefix(r, "-ERR") {
				t.Errorf("RETR of a flood: %q", r)
			}
			if r := p.cmd1("NOOP"); r != "+OK" {
				t.Errorf("the session after the refusal: %q", r)
			}
			rss := p.quit()
			t.Logf("peak RSS %d KiB; log: %s", rss>>10, p.log.String())
			if rss >= rssLimit {
				t.Errorf("pop3d's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
			}
			if !strings.Contains(p.log.String(), "127.0.0.1: bob: "+refusedLine(1, store.Addr, f.size)) {
				t.Errorf("pop3d did not report the refused entry")
			}
			p = startPOP3Pipe(t, e)
			p.cmd1("USER bob")
			if r := p.cmd1("PASS bobpw"); r != "+OK bob has 0 messages" {
				t.Errorf("login after the refusal: %q (the entry is not dropped)", r)
			}
			p.quit()
		})
	}
}

// silentStore is a store that accepts sessions and never answers.
func silentStore(t *testing.T) *hostile.Server {
	return hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Silent: true} }
	})
}

// TestTarpitStores: three stores that never answer, two notifications at
// each, and alice's real message: fetch delivers the real one and ends in
// about one session timeout (each store has one chance, and the stores are
// worked at once); a POP3 login costs about one timeout too.
func TestTarpitStores(t *testing.T) {
	const timeout = 3 * time.Second
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	h.setConf("storelocation", h.msrap)
	daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	pits := []*hostile.Server{silentStore(t), silentStore(t), silentStore(t)}
	stores := []string{h.msrap}
	for _, p := range pits {
		stores = append(stores, p.Addr)
	}
	e := readerEnv(t, bobAgent.rnaqp, stores...)
	e.setConf("timeout", strconv.Itoa(int(timeout/time.Second)))
	maildir := filepath.Join(t.TempDir(), "Maildir")
	pitNotes := func(base byte) {
		for i, p := range pits {
			for k := range 2 {
				notifyAnon(t, bobAgent.rnasp, "alice@example.org", literal(p.Addr), base+byte(2*i+k))
			}
		}
	}

	pitNotes(0)
	id := h.inject("From: alice@example.org\nSubject: real\n\nthe-real-one\n", "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	start := time.Now()
	r := e.run("", "im2000-fetch", "-d", maildir)
	took := time.Since(start)
	t.Logf("fetch took %v (timeout %v): exit %d: %s", took, timeout, r.code, r.stderr)
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "the-real-one") {
		t.Errorf("the real message is not delivered: %d messages", len(msgs))
	}
	if took > 5*timeout/2 {
		t.Errorf("fetch took %v with three tarpits, over 2.5 times the timeout %v", took, timeout)
	}
	if r.code != 111 || !strings.Contains(r.stderr, "1 delivered, 6 kept for later, 0 dropped") ||
		strings.Count(r.stderr, "failed earlier in this run; kept for the next") != 3 {
		t.Errorf("fetch's report: exit %d", r.code)
	}
	for i, p := range pits {
		if n := p.Sessions(); n != 1 {
			t.Errorf("tarpit %d saw %d sessions, want 1 (one chance)", i, n)
		}
	}

	// POP3: the tarpits' notifications have no size, so pop3d asks the
	// stores at login: at once, one chance each.
	popAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, popLog := daemonEnv(t, e.vars, popAddr, filepath.Join(bin, "im2000-pop3d"), "-l", popAddr)
	pitNotes(10) // fetch took the first ones
	id = h.inject("From: alice@example.org\nSubject: real\n\nthe-real-two\n", "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool { return recipientStates(t, h.store, "alice", id)["bob@example.net"] == "notifying/unread" })
	c, err := net.Dial("tcp", popAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	p := &pop3{t: t, conn: c, r: bufio.NewReader(c)}
	p.line()
	p.cmd("USER bob")
	start = time.Now()
	login := p.cmd("PASS bobpw")
	took = time.Since(start)
	t.Logf("POP3 login took %v: %q", took, login)
	if login != "+OK bob has 1 messages" {
		t.Errorf("POP3 login with tarpits: %q; log:\n%s", login, popLog.String())
	}
	if took > 5*timeout/2 {
		t.Errorf("POP3 login took %v with three tarpits, over 2.5 times the timeout %v", took, timeout)
	}
	if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "the-real-two") {
		t.Errorf("RETR: %q", r)
	}
	p.cmd("QUIT")
}

// TestStoreClosesSessions: a store that closes each session once it has
// nothing more to say (as stores close idle sessions): fetch dials it
// again and the second message at that store arrives in the same run.
func TestStoreClosesSessions(t *testing.T) {
	const msg = "From: alice@example.org\r\nSubject: one of two\r\n\r\nclosing-store\r\n"
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		good := fakeStore(msg)
		return func(cmd wire.Body) hostile.Answer {
			a := good(cmd)
			_, a.Close = cmd.(*msrap.Silence) // the exchange is over: hang up
			return a
		}
	})
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, len(msg)), noteAt(store.Addr, 2, len(msg))))
	e := readerEnv(t, agent.Addr, store.Addr)
	maildir := filepath.Join(t.TempDir(), "Maildir")
	r := e.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 2 || !strings.Contains(r.stderr, "2 delivered, 0 kept for later, 0 dropped") {
		t.Errorf("fetch from a store that closes its sessions: exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	if n := store.Sessions(); n != 2 {
		t.Errorf("the store saw %d sessions, want 2 (one reopened)", n)
	}
}

// TestMaxLifetime: an entry whose store keeps failing is kept while it is
// younger than maxlifetime, and dropped, with a log line, once older.
func TestMaxLifetime(t *testing.T) {
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	down := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	e := readerEnv(t, bobAgent.rnaqp, down)
	e.setConf("maxlifetime", "2")
	maildir := filepath.Join(t.TempDir(), "Maildir")
	notifyAnon(t, bobAgent.rnasp, "alice@example.org", literal(down), 1)
	notified := time.Now()

	r := e.run("", "im2000-fetch", "-d", maildir)
	if time.Since(notified) < 2*time.Second {
		if r.code != 111 || !strings.Contains(r.stderr, "0 delivered, 1 kept for later, 0 dropped") {
			t.Errorf("a young entry at a store that is down: exit %d: %s", r.code, r.stderr)
		}
	}
	time.Sleep(time.Until(notified.Add(3500 * time.Millisecond)))
	r = e.run("", "im2000-fetch", "-d", maildir)
	want := "expired bb010000000000000000000000000000 from alice@example.org at " + down + ": notified "
	if r.code != 111 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "failing longer than maxlifetime (2 seconds)") ||
		!strings.Contains(r.stderr, "0 delivered, 0 kept for later, 1 dropped") {
		t.Errorf("an entry older than maxlifetime: exit %d, log without %q: %s", r.code, want, r.stderr)
	}
	if r := e.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
		t.Errorf("the expired entry is still pending: %q", r.stdout)
	}
}
