package main

// Regression tests for a hostile review of the IMAP shim: each drives
// real sessions (serve over TCP on loopback) over a mailbox in memory.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	if err != nil && !errors.Is(err, io.EOF) { // EOF: after a BYE
		c.t.Errorf("read: %v", err)
	}
	if err != nil {
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
	// a asks the agent and the stores again only once its poll interval
	// (1 ms) has passed since its last refresh: b's two commands can take
	// less than that, and a NOOP within it would ask nothing.
	time.Sleep(5 * time.Millisecond)
	aDone := make(chan string, 1)
	go func() { aDone <- a.cmd("a2", "NOOP") }()
	select {
	case <-m.asked: // a is in the tarpit now
	case <-time.After(20 * time.Second):
		t.Fatal("the session polling every millisecond never asked the store for the new message's size")
	}
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

// EXAMINE is read-only (RFC 9051 6.3.3): FETCH sets no \Seen, STORE and
// MOVE are refused, and neither EXPUNGE nor CLOSE silences a message
// another session marked \Deleted. SELECT afterwards may change again.
func TestExamineReadOnly(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := newMemory()
	b := dialSession(t, testConfig(dir, m, time.Hour))
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	b.cmd("b3", "STORE 1 +FLAGS.SILENT (\\Deleted)")
	a := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	if r := a.cmd("a2", "EXAMINE INBOX"); !strings.Contains(r, "a2 OK [READ-ONLY]") {
		t.Fatalf("EXAMINE: %q", r)
	}
	if r := a.cmd("a3", "FETCH 1 (BODY[])"); !strings.Contains(r, "a3 OK") || strings.Contains(r, "\\Seen") {
		t.Errorf("FETCH BODY[] after EXAMINE: %q", r)
	}
	for tag, c := range map[string]string{"a4": "STORE 2 +FLAGS (\\Deleted)", "a5": "UID MOVE 1:* Trash"} {
		if r := a.cmd(tag, c); !strings.Contains(r, tag+" NO [READ-ONLY]") {
			t.Errorf("%s after EXAMINE: %q", c, r)
		}
	}
	a.cmd("a6", "EXPUNGE")
	if r := a.cmd("a7", "CLOSE"); !strings.Contains(r, "a7 OK") {
		t.Errorf("CLOSE after EXAMINE: %q", r)
	}
	if len(m.silenced) > 0 || len(m.done) > 0 {
		t.Errorf("EXAMINE's session silenced %v (done %v)", m.silenced, m.done)
	}
	state, _, err := readState(filepath.Join(dir, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range state.Msgs {
		if r.has("\\Seen") || r.UID != 1 && len(r.Flags) > 0 {
			t.Errorf("after EXAMINE: UID %d has %v", r.UID, r.Flags)
		}
	}
	a.cmd("a8", "SELECT INBOX")
	if r := a.cmd("a9", "STORE 2 +FLAGS (\\Flagged)"); !strings.Contains(r, "a9 OK") {
		t.Errorf("STORE after SELECT: %q", r)
	}
	if r := a.cmd("a10", "CLOSE"); !strings.Contains(r, "a10 OK") || !m.silenced[1] {
		t.Errorf("CLOSE after SELECT: %q, silenced %v", r, m.silenced)
	}
}

// A state begun again (lost, or not parsing) gets a UIDVALIDITY larger
// than any handed out before, even within the same second.
func TestUIDValidityNeverReused(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	noop := func(*mboxState) (bool, error) { return false, nil }
	var last uint32
	for i, lose := range []func(){
		func() {},
		func() { os.Remove(filepath.Join(dir, stateFile)) },
		func() { os.WriteFile(filepath.Join(dir, stateFile), []byte("{garbage"), 0o600) },
		func() { os.Remove(filepath.Join(dir, stateFile)) },
	} {
		lose()
		st, _, err := lockedUpdate(dir, noop)
		if err != nil {
			t.Fatal(err)
		}
		if st.UIDValidity <= last {
			t.Errorf("state %d: UIDVALIDITY %d after %d", i, st.UIDValidity, last)
		}
		last = st.UIDValidity
	}
}

// After the state began again, a session selected before must not act
// on the new UIDs: it is told BYE (on its next command, whatever it is),
// and a message another session marked \Deleted under the new UIDs is
// not silenced by the old session's EXPUNGE.
func TestStateResetEndsOldSessions(t *testing.T) {
	durableWrites = false
	messages = append(messages, "Subject: four\r\n\r\nfour\r\n")
	defer func() { messages = messages[:3] }()
	for _, cmd := range []string{"EXPUNGE", "UID STORE 2 +FLAGS (\\Flagged)", "NOOP", "FETCH 3 (BODY[])"} {
		dir := t.TempDir()
		m := newMemory()
		a := dialSession(t, testConfig(dir, m, time.Hour))
		a.cmd("a1", "LOGIN bob pw")
		a.cmd("a2", "SELECT INBOX") // UIDs 1-4: m1-m4
		m.done[1] = true            // another reader took m1
		os.Remove(filepath.Join(dir, "bob", stateFile))
		b := dialSession(t, testConfig(dir, m, time.Hour))
		b.cmd("b1", "LOGIN bob pw")
		b.cmd("b2", "SELECT INBOX")                          // UIDs 1-3: m2-m4
		b.cmd("b3", "UID STORE 2 +FLAGS.SILENT (\\Deleted)") // m3, A's UID 3
		r := a.cmd("a3", cmd)
		if !strings.Contains(r, "* BYE") {
			t.Errorf("%s in a session from before the state began again: %q", cmd, r)
		}
		if len(m.silenced) > 0 {
			t.Errorf("%s: silenced %v, deleted nothing", cmd, m.silenced)
		}
		state, _, err := readState(filepath.Join(dir, "bob"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range state.Msgs {
			if want := map[bool]int{true: 1}[r.Name == "m3"]; len(r.Flags) != want {
				t.Errorf("%s: %s has %v", cmd, r.Name, r.Flags)
			}
		}
	}
}

// countingMemory counts retrievals by kind.
type countingMemory struct {
	*memory
	retrieved int
}

func (m *countingMemory) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	m.retrieved++
	return m.memory.RetrieveTo(e, kind, w)
}

// SEARCH HEADER retrieves nothing (a retrieval tells the sender
// "readheaders"): it answers from the cached headers, and refuses when a
// message's header was never fetched.
func TestSearchHeaderNoReceipt(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := &countingMemory{memory: newMemory()}
	a := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	a.cmd("a2", "SELECT INBOX")
	if r := a.cmd("a3", "UID SEARCH HEADER Subject nomatch"); !strings.Contains(r, "a3 NO [CANNOT]") || m.retrieved != 0 {
		t.Errorf("SEARCH HEADER of uncached messages: %q, %d retrievals", r, m.retrieved)
	}
	a.cmd("a4", "FETCH 1 (ENVELOPE)")
	n := m.retrieved
	if r := a.cmd("a5", "SEARCH 1 HEADER Subject one"); !strings.Contains(r, "* SEARCH 1\r\n") || m.retrieved != n {
		t.Errorf("SEARCH HEADER of a cached header: %q, %d retrievals more", r, m.retrieved-n)
	}
}

// traced is memory whose whole retrievals carry a trace field on top, of
// a length that changes (as the reader's Received does with its store).
type traced struct {
	*memory
	trace string
}

func (m *traced) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	n, _ := io.WriteString(w, m.trace)
	k, err := m.memory.RetrieveTo(e, kind, w)
	return int64(n) + k, err
}

// RFC822.SIZE is, from a message's first whole fetch on, the octets that
// fetch served, in every session and after its cache is gone (RFC 9051:
// the size does not change).
func TestRFC822SizeStable(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := &traced{memory: newMemory(), trace: "Received: by here\r\n"}
	a := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	a.cmd("a2", "SELECT INBOX")
	r := a.cmd("a3", "FETCH 1 (RFC822.SIZE BODY.PEEK[])")
	want := "RFC822.SIZE " + strconv.Itoa(len(m.trace)+len(messages[0]))
	if !strings.Contains(r, want) {
		t.Fatalf("first whole fetch: %q, want %q", r, want)
	}
	os.RemoveAll(filepath.Join(dir, "bob", "cache")) // evicted
	m.trace = "Received: by somewhere else\r\n"
	b := dialSession(t, testConfig(dir, m, time.Hour))
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	for _, c := range []*client{a, b} {
		if r := c.cmd("x1", "FETCH 1 (RFC822.SIZE)"); !strings.Contains(r, want) {
			t.Errorf("size later: %q, want %q", r, want)
		}
	}
}
