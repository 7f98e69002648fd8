package main

// Several sessions of one user, and one session's goroutines: regression
// tests for a hostile review (issue 19) that found a session's own write
// hiding another session's change from its client for good, and IDLE
// ended by a line other than DONE leaving Idle's poll running next to the
// following command.

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/agent"
)

// B sets \Flagged; A then stores \Answered on the same message (or
// FETCHes another, setting \Seen). A's client must hear of \Flagged: its
// STORE answers the flags as recorded, and FETCH FLAGS shows both.
func TestSessionsFlagsMerge(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := newMemory()
	a := dialSession(t, testConfig(dir, m, time.Hour))
	b := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	a.cmd("a2", "SELECT INBOX")
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	b.cmd("b3", `STORE 1 +FLAGS (\Flagged)`)
	r := a.cmd("a3", `STORE 1 +FLAGS (\Answered)`)
	if !regexp.MustCompile(`\* 1 FETCH \(FLAGS \(\\Flagged \\Answered\)\)`).MatchString(r) {
		t.Errorf("A's STORE did not answer the flags as recorded (B's \\Flagged with A's \\Answered):\n%s", r)
	}
	r = a.cmd("a4", "FETCH 1 (FLAGS)")
	if !strings.Contains(r, `\Flagged`) || !strings.Contains(r, `\Answered`) {
		t.Errorf("A's FETCH FLAGS lost B's \\Flagged:\n%s", r)
	}

	// FETCH's \Seen is a write of A's too.
	b.cmd("b4", `STORE 1 +FLAGS (\Draft)`)
	r = a.cmd("a5", "FETCH 3 (BODY[])")
	r += a.cmd("a6", "NOOP")
	if !regexp.MustCompile(`\* 1 FETCH \(.*FLAGS \([^)]*\\Draft`).MatchString(r) {
		t.Errorf("A's FETCH (setting \\Seen) hid B's \\Draft on message 1:\n%s", r)
	}
	b.cmd("b5", `STORE 1 -FLAGS (\Draft)`)
	a.cmd("a7", `STORE 3 +FLAGS.SILENT (\Flagged)`)
	if r := a.cmd("a8", "FETCH 1 (FLAGS)"); strings.Contains(r, `\Draft`) {
		t.Errorf("A's STORE.SILENT hid B's removal of \\Draft:\n%s", r)
	}
}

// B expunges UID 1; A's next command is a STORE on message 2. A must
// still tell its client EXPUNGE (not during the STORE: at the NOOP), list
// UID 1 no more, and never fetch it again or leave it in the cache.
func TestSessionsExpungeAfterOwnWrite(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := &retrievals{memory: newMemory()}
	a := dialSession(t, testConfig(dir, m, time.Hour))
	b := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	a.cmd("a2", "SELECT INBOX")
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	b.cmd("b3", `STORE 1 +FLAGS (\Deleted)`)
	if r := b.cmd("b4", "EXPUNGE"); !strings.Contains(r, "* 1 EXPUNGE") {
		t.Fatalf("B's EXPUNGE: %q", r)
	}
	r := a.cmd("a3", `STORE 2 +FLAGS (\Flagged)`)
	if strings.Contains(r, "EXPUNGE") {
		t.Errorf("EXPUNGE during STORE (RFC 9051 7.5.1 forbids it):\n%s", r)
	}
	if r := a.cmd("a4", "NOOP"); !strings.Contains(r, "* 1 EXPUNGE") {
		t.Errorf("A never told of B's expunge after its own STORE:\n%s", r)
	}
	if r := a.cmd("a5", "UID SEARCH ALL"); !strings.Contains(r, "* SEARCH 2 3\r\n") {
		t.Errorf("A's UID SEARCH ALL after B's expunge of UID 1:\n%s", r)
	}
	if r := a.cmd("a6", "FETCH 1 (UID)"); !strings.Contains(r, "* 1 FETCH (UID 2)") {
		t.Errorf("A's message 1 is not UID 2:\n%s", r)
	}
	if r := a.cmd("a7", "UID FETCH 1 (BODY[])"); strings.Contains(r, "* ") {
		t.Errorf("A fetched UID 1, expunged by B:\n%s", r)
	}
	if m.of("m1") > 0 {
		t.Errorf("A retrieved the message B expunged (and silenced) %d times", m.of("m1"))
	}
	if _, err := os.Stat(filepath.Join(dir, "bob", "cache", "m1.all")); err == nil {
		t.Errorf("the expunged message's content is in the cache")
	}
}

// retrievals counts retrievals by entry name.
type retrievals struct {
	*memory
	mu sync.Mutex
	by map[string]int
}

func (m *retrievals) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	m.mu.Lock()
	if m.by == nil {
		m.by = map[string]int{}
	}
	m.by[e.Name]++
	m.mu.Unlock()
	return m.memory.RetrieveTo(e, kind, w)
}

func (m *retrievals) of(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.by[name]
}

// atOnce counts the calls inside it at once, and the most there were.
type atOnce struct{ in, most atomic.Int32 }

func (c *atOnce) enter() {
	n := c.in.Add(1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *atOnce) leave() { c.in.Add(-1) }

// IDLE ended by a line other than DONE: the library answers BAD and reads
// the next command without waiting for Idle. Idle's poll must not run
// next to that command (go test -race found storeFlags and Store racing
// sync before the session was serialised).
func TestIdleNotDoneSerial(t *testing.T) {
	durableWrites = false
	c := testConfig(t.TempDir(), newMemory(), time.Millisecond) // the agent asked at every poll
	var agent atOnce
	c.take = func(mailbox, string, string) error { // outside the user's lock (inbox.go: refresh)
		agent.enter()
		defer agent.leave()
		time.Sleep(20 * time.Millisecond) // the agent's answer
		return nil
	}
	cl := dialSession(t, c)
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	for i := 0; i < 20; i++ {
		cl.c.Write([]byte("i IDLE\r\n"))
		if l := cl.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		time.Sleep(time.Duration(i%7) * 3 * time.Millisecond)
		cl.c.Write([]byte("NOTDONE\r\n"))
		for l := cl.line(); !strings.HasPrefix(l, "i "); l = cl.line() {
			if l == "" {
				t.Fatal("the session ended")
			}
		}
		cl.cmd("f", `STORE 1 +FLAGS (\Flagged)`)
		cl.cmd("g", `STORE 1 -FLAGS (\Flagged)`)
		cl.cmd("h", "FETCH 1:* (BODY.PEEK[HEADER])")
	}
	if n := agent.most.Load(); n > 1 {
		t.Errorf("one session ran in %d goroutines at once", n)
	}
	// The session still works, and IDLE ended by DONE still works.
	cl.c.Write([]byte("j IDLE\r\n"))
	cl.line()
	cl.c.Write([]byte("DONE\r\n"))
	if r := cl.cmd("k", "NOOP"); !strings.Contains(r, "j OK") {
		t.Errorf("IDLE ... DONE: %q", r)
	}
}
