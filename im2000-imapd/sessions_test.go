package main

// Several sessions of one user: regression tests for a hostile review
// (issue 19) that found a session's own write hiding another session's
// change from its client for good.

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
