package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/inbox"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/wiretest"
)

// The maildrop of the fuzz test: message 2 is gone from its store, and
// silencing message 3 fails, so it must stay pending.
var messages = []string{
	"Subject: one\r\n\r\n.leading dot\r\n.\r\n..\r\nend\r\n",
	"",
	"Subject: three\nX: bare LF\n\nbody\n.\nno final newline",
}

// memory is a mailbox in memory that records what the session did.
type memory struct {
	silenced map[int]bool
	done     map[int]bool
	opened   bool
	closed   bool
	badKind  bool
}

func num(e agent.Entry) int { return int(e.N.Date) }

func (m *memory) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	if kind != msrap.All && kind != msrap.HeadersOnly {
		m.badKind = true
	}
	msg := messages[num(e)-1]
	if msg == "" {
		return 0, inbox.ErrGone
	}
	if kind == msrap.HeadersOnly {
		head, _, _ := strings.Cut(strings.ReplaceAll(msg, "\r\n", "\n"), "\n\n")
		msg = head + "\n"
	}
	n, err := io.WriteString(w, msg)
	return int64(n), err
}

func (m *memory) Silence(e agent.Entry) error {
	if num(e) == 3 {
		return errors.New("store unreachable")
	}
	m.silenced[num(e)] = true
	return nil
}

func (m *memory) Done(e agent.Entry)    { m.done[num(e)] = true }
func (m *memory) Close()                { m.closed = true }
func (m *memory) SetDeadline(time.Time) {}

// fakeConn is a session's connection: the client's whole input, and what
// the server wrote.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzPOP3 feeds arbitrary client input to a POP3 session with a maildrop
// in memory, then reads the transcript as a client would: one status line
// per command, multi-line answers dot-terminated and correctly stuffed,
// and a message dropped from the pending queue only once its store took
// the silence.
func FuzzPOP3(f *testing.F) {
	f.Add("USER bob\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL\r\nTOP 1 0\r\nTOP 3 1\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\nDELE 1\r\nDELE 3\r\nQUIT\r\n")
	f.Add("CAPA\r\nAUTH PLAIN\r\nAGJvYgBwdw==\r\nCAPA\r\nLIST 3\r\nUIDL 1\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n")
	f.Add("AUTH PLAIN AGJvYgB3cm9uZw==\r\nUSER ../x\r\nPASS pw\r\nRETR 1\r\nQUIT\r\n")
	f.Add("USER bob\nPASS pw\nTOP 1 -1\nTOP 9 1\nDELE 0\n" + strings.Repeat("x", 600) + "\r\n")
	state := f.TempDir()
	f.Fuzz(func(t *testing.T, input string) {
		m := &memory{silenced: map[int]bool{}, done: map[int]bool{}}
		c := &config{state: state, timeout: time.Second}
		c.check = func(user, pass string) error {
			if pass != "pw" {
				return inbox.ErrAuth
			}
			return nil
		}
		c.open = func(dir, user, pass, peer string) (mailbox, []*entry, error) {
			if pass != "pw" {
				return nil, nil, inbox.ErrAuth
			}
			m.opened = true
			var drop []*entry
			for i, msg := range messages {
				n := rnaqp.NotificationAndLocalData{Notification: wiretest.Notification(), Date: uint64(i + 1)}
				n.Notification.ID = wiretest.ID(byte(i))
				drop = append(drop, &entry{e: agent.Entry{N: n}, size: uint64(len(msg))})
			}
			return m, drop, nil
		}
		conn := &fakeConn{Reader: strings.NewReader(input)}
		c.serve(conn, "fuzz")
		read(t, input, conn.out.Bytes())
		for n := range m.done {
			// A message gone from its store is dropped unsilenced.
			if !m.silenced[n] && messages[n-1] != "" {
				t.Fatalf("message %d dropped from the pending queue without being silenced", n)
			}
		}
		if m.opened != m.closed {
			t.Fatalf("maildrop opened %v, closed %v at the end of the session", m.opened, m.closed)
		}
		if m.badKind {
			t.Fatal("retrieved with a kind other than all or headersonly")
		}
	})
}

// read checks the server's transcript against the client's input.
func read(t *testing.T, input string, transcript []byte) {
	out := bufio.NewReader(bytes.NewReader(transcript))
	status := func() string {
		line, err := out.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "\r\n") || strings.ContainsAny(line[:len(line)-2], "\r\n") {
			t.Fatalf("bad or missing reply line %q (%v) in\n%s", line, err, transcript)
		}
		return line[:len(line)-2]
	}
	multi := func() []byte {
		var body []byte
		for {
			line := status()
			if line == "." {
				return body
			}
			if strings.HasPrefix(line, ".") {
				if !strings.HasPrefix(line, "..") {
					t.Fatalf("unstuffed line %q in\n%s", line, transcript)
				}
				line = line[1:]
			}
			body = append(body, line+"\r\n"...)
		}
	}
	if s := status(); !strings.HasPrefix(s, "+OK") {
		t.Fatalf("greeting %q", s)
	}
	in := bufio.NewReader(strings.NewReader(input))
	// next reads the client's next command line; false when the session
	// ends there: at the end of the input, where a last line without its
	// end is never answered, or at an overlong line.
	next := func(in *bufio.Reader) (string, bool) {
		line, err := in.ReadString('\n')
		if len(line) > 512 {
			if s := status(); s != "-ERR line too long" {
				t.Fatalf("overlong line answered %q", s)
			}
			return "", false
		}
		return line, err == nil
	}
	authed := false
	for {
		line, more := next(in)
		if !more {
			break
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		verb = strings.ToUpper(verb)
		s := status()
		if s == "+ " && !authed && verb == "AUTH" {
			if _, more := next(in); !more {
				break
			}
			s = status()
		}
		ok := strings.HasPrefix(s, "+OK")
		if !ok && !strings.HasPrefix(s, "-ERR") {
			t.Fatalf("reply %q to %q", s, line)
		}
		if verb == "QUIT" && ok {
			break
		}
		if !authed {
			if verb == "CAPA" && ok {
				multi()
			}
			authed = ok && (verb == "PASS" || verb == "AUTH")
			continue
		}
		switch {
		case !ok:
		case verb == "CAPA", (verb == "LIST" || verb == "UIDL") && arg == "":
			multi()
		case verb == "RETR":
			n, _ := strconv.Atoi(strings.TrimSpace(arg))
			want := strings.ReplaceAll(strings.ReplaceAll(messages[n-1], "\r\n", "\n"), "\n", "\r\n")
			if !strings.HasSuffix(want, "\r\n") {
				want += "\r\n"
			}
			if got := multi(); string(got) != want {
				t.Fatalf("RETR %s gave %q, want %q", arg, got, want)
			}
		case verb == "TOP":
			multi()
		}
	}
	if rest, _ := io.ReadAll(out); len(rest) > 0 {
		t.Fatalf("server wrote %q after the session should have ended", rest)
	}
}
