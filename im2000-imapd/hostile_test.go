package main

// Regression tests for a hostile review of the IMAP shim: each drives
// real sessions (serve over TCP on loopback) over a mailbox in memory.

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/inbox"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/wiretest"
)

// client speaks IMAP to one session.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSession(t *testing.T, c *config) *client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		conn, err := l.Accept()
		l.Close()
		if err == nil {
			c.serve(conn, conn.RemoteAddr().String())
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := &client{t, conn, bufio.NewReader(conn)}
	cl.line()
	return cl
}

// line reads one response line (a bounded wait: a session that never
// answers fails the test instead of hanging it).
func (c *client) line() string {
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Errorf("read: %v", err)
		return ""
	}
	return s
}

// cmd sends a command and returns the whole response up to its tagged line.
func (c *client) cmd(tag, s string) string {
	c.c.Write([]byte(tag + " " + s + "\r\n"))
	var out strings.Builder
	for {
		l := c.line()
		out.WriteString(l)
		if l == "" || strings.HasPrefix(l, tag+" ") {
			return out.String()
		}
	}
}

func testConfig(dir string, m mailbox, poll time.Duration) *config {
	c := &config{state: dir, timeout: time.Minute, poll: poll, cacheBytes: 1 << 20, clearAuth: true}
	c.check = func(user, pass string) error {
		if pass != "pw" {
			return inbox.ErrAuth
		}
		return nil
	}
	c.open = func(string, string, string) (mailbox, error) { return m, nil }
	c.take = func(mailbox, string, string) error { return nil }
	c.alert = func(msg string) { panic(msg) }
	return c
}

func newMemory() *memory { return &memory{silenced: map[int]bool{}, done: map[int]bool{}} }

// tarpit is memory plus, once arrived, a 4th notification without a
// size whose store does not answer QuerySize until released.
type tarpit struct {
	*memory
	mu      sync.Mutex
	arrived bool
	asked   chan struct{} // closed when the first QuerySize hangs
	release chan struct{}
	once    sync.Once
}

func (m *tarpit) Pending() ([]agent.Entry, error) {
	out, _ := m.memory.Pending()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.arrived {
		n := rnaqp.NotificationAndLocalData{Notification: wiretest.Notification(), Date: 4}
		n.Notification.ID = wiretest.ID(4)
		n.Notification.Size = nil
		out = append(out, agent.Entry{Name: "m4", N: n})
	}
	return out, nil
}

func (m *tarpit) Size(e agent.Entry) (uint64, error) {
	if e.N.Notification.Size != nil {
		return *e.N.Notification.Size, nil
	}
	first := false
	m.once.Do(func() { first = true })
	if !first {
		return 0, errors.New("store timed out")
	}
	close(m.asked)
	<-m.release
	return 0, errors.New("store timed out")
}

// A store that never answers a size query delays only the session that
// asked it: the user's other sessions change flags and log in meanwhile
// (the query is made without the user's lock).
func TestTarpitStoreStallsOnlyItsSession(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := &tarpit{memory: newMemory(), asked: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(m.release) }) }
	defer release()
	a := dialSession(t, testConfig(dir, m, time.Millisecond)) // asks on every command
	b := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	m.mu.Lock()
	m.arrived = true
	m.mu.Unlock()
	aDone := make(chan string, 1)
	go func() { aDone <- a.cmd("a2", "NOOP") }()
	<-m.asked // a is in the tarpit now
	bDone := make(chan string, 1)
	go func() {
		r := b.cmd("b3", "STORE 1 +FLAGS (\\Flagged)")
		l := dialSession(t, testConfig(dir, m, time.Hour))
		bDone <- r + l.cmd("l1", "LOGIN bob pw")
	}()
	select {
	case r := <-bDone:
		if !strings.Contains(r, "b3 OK") || !strings.Contains(r, "l1 OK") {
			t.Errorf("other sessions while a store tarpits: %q", r)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("another session's STORE and a new LOGIN wait for the tarpit store")
	}
	release()
	if r := <-aDone; !strings.Contains(r, "a2 OK") {
		t.Errorf("the tarpitted session: %q", r)
	}
}
