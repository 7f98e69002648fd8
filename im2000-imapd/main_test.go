package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
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

// The mailbox of the fuzz test: message 2 is gone from its store, and
// silencing message 3 fails, so it must stay pending.
var messages = []string{
	"Subject: one\r\nFrom: a@example.org\r\n\r\nbody one\r\n",
	"",
	"Subject: three\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\npart\n--x--\n",
}

// memory is a mailbox in memory that records what the sessions did.
type memory struct {
	silenced map[int]bool
	done     map[int]bool
	badKind  bool
}

func num(e agent.Entry) int { return int(e.N.Date) }

func (m *memory) Pending() ([]agent.Entry, error) {
	var out []agent.Entry
	for i, msg := range messages {
		if m.done[i+1] {
			continue
		}
		size := uint64(len(msg))
		n := rnaqp.NotificationAndLocalData{Notification: wiretest.Notification(), Date: uint64(i + 1)}
		n.Notification.ID = wiretest.ID(byte(i))
		n.Notification.Size = &size
		out = append(out, agent.Entry{Name: "m" + strconv.Itoa(i+1), N: n})
	}
	return out, nil
}

func (m *memory) Size(e agent.Entry) (uint64, error) { return *e.N.Notification.Size, nil }

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
func (m *memory) Close()                {}
func (m *memory) SetDeadline(time.Time) {}

// fakeConn is a session's connection: the client's whole input, and what
// the server wrote.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

type fakeAddr struct{}

func (fakeAddr) Network() string { return "fuzz" }
func (fakeAddr) String() string  { return "fuzz" }

func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return fakeAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return fakeAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzIMAP feeds arbitrary client input, through the IMAP library's
// parser, to a session over a mailbox in memory and a state directory on
// disk, twice (the second session sees the first's state). It checks that
// no handler panics, that the transcript is well framed (every response
// line untagged, a continuation, or tagged with a tag the client sent;
// literals of the announced length), that a message leaves the pending
// queue only once its store took the silence (or was gone), and that the
// state keeps its UIDs unique, ascending and below UIDNEXT. What follows
// a NUL in the input is one more message in the mailbox (message 4), so
// that MIME structures are fuzzed as well as commands.
func FuzzIMAP(f *testing.F) {
	f.Add("a LOGIN bob pw\r\nb SELECT INBOX\r\nc FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)\r\nd UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[])\r\ne STORE 1:* +FLAGS (\\Deleted)\r\nf EXPUNGE\r\ng LOGOUT\r\n")
	f.Add("a AUTHENTICATE PLAIN AGJvYgBwdw==\r\nb LIST \"\" *\r\nc STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\nd CREATE x\r\ne RENAME INBOX y\r\nf DELETE INBOX\r\ng APPEND INBOX {3}\r\nabc\r\nh NAMESPACE\r\ni LSUB \"\" *\r\n")
	f.Add("a LOGIN bob pw\r\nb EXAMINE inbox\r\nc UID SEARCH ALL\r\nd SEARCH UNSEEN HEADER Subject one\r\ne UID MOVE 1:* Trash\r\nf COPY 1 x\r\ng IDLE\r\nDONE\r\nh NOOP\r\ni CLOSE\r\n")
	f.Add("a LOGIN bob wrong\r\nb SELECT INBOX\r\nc FETCH * (BODY[1] BODY[TEXT]<0.3> RFC822 BINARY[1])\r\nd UID STORE 2:* FLAGS.SILENT (\\Seen \\Flagged $x)\r\ne UID EXPUNGE 1:*\r\n" + strings.Repeat("x", 60000) + "\r\n")
	// Literals: APPEND with a literal+ whose octets are commands, a
	// literal+ after a syntax error, one over 4096 octets, synchronizing
	// ones, LOGIN with literals.
	f.Add("a LOGIN {3}\r\nbob {2+}\r\npw\r\nb SELECT INBOX\r\nc APPEND Sent {52+}\r\nX-A: UID STORE 1:* +FLAGS (\\Deleted)\r\nX-B: EXPUNGE\r\n\r\n\r\nd STORE 1 +FLAGS x y {9+}\r\ne EXPUNGE\r\n\r\nf SELECT {5}\r\nINBOX\r\ng APPEND INBOX (\\Seen) {4097+}\r\nh EXPUNGE\r\n")
	f.Add("a LOGIN bob pw\r\nb SELECT INBOX\r\nc SEARCH HEADER {7+}\r\nSubject {1+}\r\nt\r\nd APPEND INBOX {0+}\r\n\r\ne UID SEARCH OR HEADER From a NOT HEADER X {2}\r\nyz\r\nf LOGOUT\r\n")
	// Nested MIME: message/rfc822 and multiparts, deeper than described.
	structure := "a LOGIN bob pw\r\nb SELECT INBOX\r\nc FETCH 4 (BODYSTRUCTURE)\r\nd FETCH 4 (BODY BODY.PEEK[1.1.1] BINARY.PEEK[1.2] BINARY.SIZE[1])\r\ne FETCH 4 (BODYSTRUCTURE ENVELOPE)\r\nf SEARCH HEADER subject x\r\n"
	f.Add(structure + "\x00" + nestedRFC822(30))
	f.Add(structure + "\x00" + nestedMultipart(30))
	f.Add(structure + "\x00Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in\r\n\r\nx\r\n--d\r\nContent-Type: message/global\r\n\r\nSubject: g\r\n\r\ny\r\n--d--\r\n")
	durableWrites = false
	f.Fuzz(func(t *testing.T, input string) {
		if cmds, extra, ok := strings.Cut(input, "\x00"); ok {
			old := messages
			defer func() { messages = old }()
			messages = append(messages[:len(messages):len(messages)], extra)
			input = cmds
		}
		m := &memory{silenced: map[int]bool{}, done: map[int]bool{}}
		c := &config{state: fuzzDir(t), timeout: time.Second, poll: time.Hour, cacheBytes: 100, clearAuth: true}
		c.check = func(user, pass string) error {
			if pass != "pw" {
				return inbox.ErrAuth
			}
			return nil
		}
		c.open = func(dir, user, pass string) (mailbox, error) { return m, nil }
		c.take = func(mailbox, string, string) error { return nil }
		var alerts []string
		c.alert = func(msg string) { alerts = append(alerts, msg) }
		for range 2 {
			conn := &fakeConn{Reader: strings.NewReader(input)}
			c.serve(conn, "fuzz")
			if len(alerts) > 0 {
				t.Fatalf("a handler panicked: %s", alerts[0])
			}
			transcript(t, input, conn.out.Bytes())
		}
		for n := range m.done {
			if !m.silenced[n] && messages[n-1] != "" {
				t.Fatalf("message %d dropped from the pending queue without being silenced", n)
			}
		}
		if m.badKind {
			t.Fatal("retrieved with a kind other than all or headersonly")
		}
		users, _ := readDirNames(c.state)
		for _, u := range users {
			s, _, err := readState(c.state + "/" + u)
			if err != nil {
				t.Fatalf("state of %s: %v", u, err)
			}
			for i, r := range s.Msgs {
				if r.UID >= s.UIDNext || i > 0 && r.UID <= s.Msgs[i-1].UID {
					t.Fatalf("state of %s: UIDs %v, UIDNEXT %d", u, s.Msgs, s.UIDNext)
				}
			}
		}
	})
}

// fuzzDir is a state directory for one fuzz input: on tmpfs when there
// is one, where an input costs a quarter of what it costs on a disk's
// file system (make test runs 100000 inputs; durability is not what is
// fuzzed).
func fuzzDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "im2000-imapd-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

var literal = regexp.MustCompile(`\{(\d+)\}\r\n$`)

// transcript checks the framing of what the server wrote.
func transcript(t *testing.T, input string, out []byte) {
	tags := map[string]bool{}
	// The library resynchronises at a bare CR as well as at LF, so a tag
	// may follow either.
	for _, line := range strings.FieldsFunc(input, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if tag, _, ok := strings.Cut(line, " "); ok {
			tags[tag] = true
		}
	}
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return
		}
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("a response line without CRLF: %q in\n%q", line, out)
		}
		tag, _, _ := strings.Cut(line, " ")
		if tag != "*" && tag != "+" && !tags[tag] {
			t.Fatalf("a response %q tagged with no tag the client sent, in\n%q", line, out)
		}
		// A line may go on after literals: skip each, read the rest.
		for {
			m := literal.FindStringSubmatch(line)
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[1])
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				t.Fatalf("a literal of %d octets cut short in\n%q", n, out)
			}
			if line, err = r.ReadString('\n'); err != nil {
				t.Fatalf("nothing after a literal in\n%q", out)
			}
		}
	}
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, err
}
