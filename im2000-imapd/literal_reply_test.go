package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Literal octets a nonconforming client made the library run as
// commands past the guard (issue 19, third hostile review). Each ends the
// session now; what counts is that nothing hidden in a literal ran.

// hostileCmds are a literal's lines that are IMAP commands.
const hostileCmds = "f UID STORE 1:* +FLAGS (\\Deleted)\r\ng EXPUNGE\r\n"

// ended checks that the session ended without running a literal's
// commands: none answered, nothing silenced.
func ended(t *testing.T, m *memory, cl *client, before string) {
	t.Helper()
	r := before + drain(cl)
	if strings.Contains(r, "X-A: OK") || strings.Contains(r, "f OK") || strings.Contains(r, "g OK") {
		t.Errorf("a literal's octets ran as commands: %q", r)
	}
	if strings.Contains(r, "h OK") {
		t.Errorf("the session went on: %q", r)
	}
	untouched(t, m, cl, false)
}

func loggedIn(t *testing.T) (*memory, *client) {
	durableWrites = false
	m := newMemory()
	cl := dialSession(t, testConfig(t.TempDir(), m, time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	return m, cl
}

// APPEND with two literals (MULTIAPPEND, not offered): the library
// returns from APPEND with no answer and read the second as commands.
func TestLiteralSecondInAppend(t *testing.T) {
	m, cl := loggedIn(t)
	msg1 := "Subject: one\r\n\r\nhello\r\n"
	msg2 := "Subject: two\r\n" + hostileLines + "\r\nhello\r\n"
	cl.c.Write([]byte("d APPEND Sent {" + strconv.Itoa(len(msg1)) + "+}\r\n" + msg1 +
		" {" + strconv.Itoa(len(msg2)) + "+}\r\n" + msg2 + "\r\nh NOOP\r\n"))
	ended(t, m, cl, "")
}

// A literal's "{" beyond the guard's tail (leading zeros): the guard
// could not read its size, the library read 5, and the guard was off for
// the rest of the session.
func TestLiteralSizeUnread(t *testing.T) {
	m, cl := loggedIn(t)
	cl.c.Write([]byte("d SELECT {" + strings.Repeat("0", 40) + "5}\r\n"))
	r := readUntil(cl, "+")
	if strings.HasPrefix(r, "+") {
		cl.c.Write([]byte("INBOX\r\n"))
		r += readUntil(cl, "d ")
		cl.c.Write([]byte("c STORE 1 +FLAGS x y {" + strconv.Itoa(len(hostileCmds)) + "+}\r\n" +
			hostileCmds + "\r\nh NOOP\r\n"))
	}
	ended(t, m, cl, r)
}

// IDLE's end line with a literal: it answers the library's "+", the
// library refuses it and read the literal as commands.
func TestLiteralIdleDone(t *testing.T) {
	m, cl := loggedIn(t)
	cl.c.Write([]byte("i IDLE\r\n"))
	r := readUntil(cl, "+")
	cl.c.Write([]byte("DONE {" + strconv.Itoa(len(hostileCmds)) + "+}\r\n" + hostileCmds + "h NOOP\r\n"))
	ended(t, m, cl, r)
}

// AUTHENTICATE's response line with a literal: likewise.
func TestLiteralAuthenticateResponse(t *testing.T) {
	durableWrites = false
	m := newMemory()
	cl := dialSession(t, testConfig(t.TempDir(), m, time.Hour))
	cl.c.Write([]byte("a AUTHENTICATE PLAIN\r\n"))
	r := readUntil(cl, "+")
	lit := "e LOGIN bob pw\r\nd SELECT INBOX\r\n" + hostileCmds
	cl.c.Write([]byte("{" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "h NOOP\r\n"))
	ended(t, m, cl, r)
}
