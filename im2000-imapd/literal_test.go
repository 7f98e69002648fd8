package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostileLines are a message's header lines that are IMAP commands.
const hostileLines = "X-A: UID STORE 1:* +FLAGS (\\Deleted)\r\nX-B: EXPUNGE\r\n"

// untouched checks that no command hidden in a literal ran: nothing
// silenced, and (when the session still answers) no \Deleted flag.
func untouched(t *testing.T, m *memory, cl *client, alive bool) {
	t.Helper()
	if len(m.silenced) > 0 {
		t.Errorf("a literal's octets ran as commands: messages silenced %v", m.silenced)
	}
	if !alive {
		return
	}
	if r := cl.cmd("z", "FETCH 1:* (FLAGS)"); !strings.Contains(r, "z OK") || strings.Contains(r, "Deleted") {
		t.Errorf("after the literal: %q", r)
	}
}

// readUntil reads response lines up to one starting with prefix (or the
// end of the session) and returns them.
func readUntil(cl *client, prefix string) string {
	var out strings.Builder
	for i := 0; i < 20; i++ {
		l := cl.line()
		out.WriteString(l)
		if l == "" || strings.HasPrefix(l, prefix) {
			break
		}
	}
	return out.String()
}

// drain reads what the session still says until it ends (a reset, as
// the server closes with the client's octets unread, included).
func drain(cl *client) string {
	var out strings.Builder
	cl.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		l, err := cl.r.ReadString('\n')
		out.WriteString(l)
		if err != nil {
			return out.String()
		}
	}
}

// A message saved to Sent with a non-synchronizing literal (LITERAL- is
// offered): APPEND reads it and refuses it; before, APPENDLIMIT=0 refused
// it unread and its header lines ran as commands.
func TestAppendLiteralNeverCommands(t *testing.T) {
	m, cl := loggedIn(t)
	msg := "Subject: re\r\n" + hostileLines + "\r\nhello\r\n"
	cl.c.Write([]byte("d APPEND Sent {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n"))
	if r := readUntil(cl, "d "); !strings.HasPrefix(r, "d NO [CANNOT]") {
		t.Errorf("APPEND with a literal+: %q", r)
	}
	untouched(t, m, cl, true)
}

// A non-synchronizing literal the library does not take, with the
// session going on: after a syntax error earlier in the command (the
// guard discards it, the rest of the command with it), a synchronizing
// one taken, and one over 4096 octets, which ends the session.
func TestRefusedLiteralDiscarded(t *testing.T) {
	m, cl := loggedIn(t)
	lit := "f UID STORE 1:* +FLAGS (\\Deleted)\r\ng EXPUNGE\r\n"
	cl.c.Write([]byte("c STORE 1 +FLAGS x y {" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "\r\nh NOOP\r\n"))
	if r := readUntil(cl, "h "); !strings.Contains(r, "c BAD") || !strings.Contains(r, "h OK") || strings.Contains(r, "f OK") {
		t.Errorf("a literal+ after a syntax error: %q", r)
	}
	cl.c.Write([]byte("d SELECT {5}\r\n"))
	if r := readUntil(cl, "+"); !strings.HasPrefix(r, "+") {
		t.Errorf("a synchronizing literal: %q", r)
	}
	cl.c.Write([]byte("INBOX\r\n"))
	if r := readUntil(cl, "d "); !strings.Contains(r, "d OK") {
		t.Errorf("SELECT with a synchronizing literal: %q", r)
	}
	untouched(t, m, cl, true)
	lit = strings.Repeat("e UID STORE 1:* +FLAGS (\\Deleted)\r\n", 150)
	cl.c.Write([]byte("d SELECT {" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "e EXPUNGE\r\n"))
	if r := readUntil(cl, "d "); !strings.HasPrefix(r, "d ") || strings.HasPrefix(r, "d OK") {
		t.Errorf("a literal+ over 4096: %q", r)
	}
	if r := drain(cl); r != "" {
		t.Errorf("the session went on after a literal+ over 4096: %q", r)
	}
	untouched(t, m, cl, false)
}

// APPEND, and LOGIN before authentication, with a non-synchronizing
// literal over 4096 octets (which a LITERAL- client never sends): the
// library refuses it unread, so the session ends.
func TestOversizeLiteralEndsSession(t *testing.T) {
	durableWrites = false
	for _, login := range []bool{false, true} {
		m := newMemory()
		cl := dialSession(t, testConfig(t.TempDir(), m, time.Hour))
		msg := "Subject: re\r\n" + strings.Repeat(hostileLines, 100) + "\r\nhello\r\n"
		if login {
			cl.c.Write([]byte("a LOGIN bob {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n"))
		} else {
			cl.cmd("a", "LOGIN bob pw")
			cl.cmd("b", "SELECT INBOX")
			cl.c.Write([]byte("d APPEND Sent {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n"))
		}
		r := drain(cl)
		if strings.Contains(r, "OK") || strings.Count(r, "\r\n") > 2 {
			t.Errorf("login %v: a literal+ over 4096 octets: %q", login, r)
		}
		untouched(t, m, cl, false)
	}
}

// A command pipelined before one with a literal+ (issue 19, third
// review): the guard took "c1 OK" for the answer to c2, discarded c2's
// literal the library took, and the library read the next command as
// the literal; the next message saved to Sent ran as commands.
func TestPipelinedLiteral(t *testing.T) {
	m, cl := loggedIn(t)
	cl.c.Write([]byte("c1 NOOP\r\nc2 SELECT {5+}\r\nINBOX\r\nc3 NOOP\r\n"))
	if r := readUntil(cl, "c3 "); !strings.Contains(r, "c2 OK") || !strings.Contains(r, "c3 OK") {
		t.Errorf("a literal+ after a pipelined command: %q", r)
	}
	cl.c.Write([]byte("c4 NOOP\r\nc5 SEARCH SUBJECT {40+}\r\n" + strings.Repeat("x", 40) + "\r\n"))
	if r := readUntil(cl, "c5 "); !strings.Contains(r, "c5 NO [CANNOT] SEARCH HEADER") {
		t.Errorf("SEARCH with a literal+ after a pipelined command: %q", r)
	}
	msg := "Subject: re\r\nX1 UID STORE 1:* +FLAGS (\\Deleted)\r\nX2 EXPUNGE\r\n\r\nhello\r\n"
	cl.c.Write([]byte("d APPEND Sent {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n"))
	if r := readUntil(cl, "d "); !strings.HasPrefix(r, "d NO [CANNOT]") {
		t.Errorf("APPEND with a literal+: %q", r)
	}
	untouched(t, m, cl, true)
	// Pipelined after DONE ends IDLE.
	cl.c.Write([]byte("i IDLE\r\n"))
	readUntil(cl, "+")
	cl.c.Write([]byte("DONE\r\nc6 STATUS {5+}\r\nINBOX (MESSAGES)\r\nc7 NOOP\r\n"))
	if r := readUntil(cl, "c7 "); !strings.Contains(r, "c6 OK") || !strings.Contains(r, "c7 OK") {
		t.Errorf("a literal+ after DONE: %q", r)
	}
}

// Two open commands with one tag, the second with a literal+: the guard
// cannot tell their answers apart and ends the session rather than guess.
func TestLiteralTagInDoubt(t *testing.T) {
	m, cl := loggedIn(t)
	lit := "f UID STORE 1:* +FLAGS (\\Deleted)\r\ng EXPUNGE\r\n"
	cl.c.Write([]byte("c NOOP\r\nc SEARCH TEXT {" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "\r\n"))
	if r := drain(cl); strings.Contains(r, "f OK") || strings.Contains(r, "g OK") {
		t.Errorf("one tag twice with a literal+: %q", r)
	}
	untouched(t, m, cl, false)
}

// The guard follows the output's literals: a body holding its reader's
// next tag and "+ Ready for literal data" at a line's start is no answer.
func TestOutFollowSkipsLiterals(t *testing.T) {
	var lines []string
	var o outFollow
	w := "* 1 FETCH (BODY[] {35}\r\nc2 NO x\r\n+ Ready for literal data\r\n)\r\nc1 OK do"
	for _, p := range []string{w[:10], w[10:30], w[30:], "ne\r\n"} {
		o.follow([]byte(p), func(h []byte) { lines = append(lines, string(h)) })
	}
	want := []string{"* 1 FETCH (BODY[] {35}\r", ")\r", "c1 OK done\r"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", lines, want)
	}
}

// A synchronizing literal the library refuses (no "+"): the client's
// next line is a command of its own, with its own tag (the fuzzer's
// "0 LOGIN{0}\n{0}\n" lost the guard its place).
func TestRefusedSyncLiteralThenLiteralPlus(t *testing.T) {
	_, cl := loggedIn(t)
	cl.c.Write([]byte("c STORE x {5}\r\n"))
	if r := readUntil(cl, "c "); !strings.HasPrefix(r, "c ") || strings.HasPrefix(r, "c OK") {
		t.Errorf("a synchronizing literal after a syntax error: %q", r)
	}
	cl.c.Write([]byte("d SELECT {5+}\r\nINBOX\r\ne NOOP\r\n"))
	if r := readUntil(cl, "e "); !strings.Contains(r, "d OK") || !strings.Contains(r, "e OK") {
		t.Errorf("a literal+ after a refused synchronizing literal: %q", r)
	}
}
