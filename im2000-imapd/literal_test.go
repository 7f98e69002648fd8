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
	durableWrites = false
	m := newMemory()
	cl := dialSession(t, testConfig(t.TempDir(), m, time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
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
	durableWrites = false
	m := newMemory()
	cl := dialSession(t, testConfig(t.TempDir(), m, time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
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
