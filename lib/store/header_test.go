package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/mailmsg"
)

// messageOf is a Message whose bytes (after the envelope) are data.
func messageOf(t testing.TB, data []byte) *Message {
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &Message{f: f, size: int64(len(data))}
}

// headerOf is the header section of msg as Header defines it, found by
// splitting the whole message into lines: everything before the first
// empty line, or all of it (up to Header's 1 MiB bound) if there is none.
func headerOf(msg []byte) []byte {
	msg = msg[:min(len(msg), 1<<20)]
	for off := 0; off < len(msg); {
		i := bytes.IndexByte(msg[off:], '\n')
		if i < 0 {
			break
		}
		if line := string(msg[off : off+i+1]); line == "\r\n" || line == "\n" {
			return msg[:off]
		}
		off += i + 1
	}
	return msg
}

// TestHeaderLongLines: a header line whose length puts its line end on the
// edge of Header's read buffer (4 KiB), or the edge between its CR and LF,
// is not taken for the end of the header section. Lines of n octets before
// the line end, n around one, two and three times 4,096, first and in the
// middle of the header, CRLF and bare LF, a field Summary drops and one it
// keeps, folded or not; then the fields after the long line must be in
// Header and in Summary, and the body in neither.
func TestHeaderLongLines(t *testing.T) {
	var ns []int
	for _, k := range []int{4096, 8192, 12288} {
		for n := k - 4; n <= k+3; n++ {
			ns = append(ns, n)
		}
	}
	for _, eol := range []string{"\r\n", "\n"} {
		for _, n := range ns {
			for _, c := range []struct {
				name   string
				before string // fields before the long line
				long   string // its first octets: a field name, or a fold
				kept   bool   // whether Summary keeps it
			}{
				{"first, X-Long", "", "X-Long: ", false},
				{"after From, X-Long", "From: alice@example.org" + eol, "X-Long: ", false},
				{"after From, To", "From: alice@example.org" + eol, "To: ", true},
				{"folded Subject", "From: alice@example.org" + eol + "Subject: a" + eol, "\t", true},
			} {
				long := c.long + strings.Repeat("x", n-len(c.long)) + eol
				after := "To: bob@example.net" + eol + "Date: Thu, 1 Jan 2004 00:00:00 +0000" + eol + "X-After: 1" + eol
				header := c.before + long + after
				msg := header + eol + "body" + eol + eol + "more" + eol
				name := fmt.Sprintf("%q %s, line of %d+%d", eol, c.name, n, len(eol))

				h, err := messageOf(t, []byte(msg)).Header()
				if err != nil || string(h) != header {
					t.Errorf("%s: Header() = %d octets ending %q, %v; want %d ending %q",
						name, len(h), h[max(0, len(h)-30):], err, len(header), header[len(header)-30:])
					continue
				}
				// The fields before the long line are all ones Summary keeps.
				want := c.before + "To: bob@example.net" + eol + "Date: Thu, 1 Jan 2004 00:00:00 +0000" + eol
				if c.kept {
					want = c.before + long + want[len(c.before):]
				}
				if got := string(mailmsg.Summary(h)); got != want {
					t.Errorf("%s: Summary = %d octets, want %d:\n%.200q\n%.200q", name, len(got), len(want), got, want)
				}
				// With no body and no empty line, all of it is the header.
				if h, err := messageOf(t, []byte(header)).Header(); err != nil || string(h) != header {
					t.Errorf("%s, no body: Header() = %d octets, %v; want %d", name, len(h), err, len(header))
				}
			}
		}
	}
}

// TestHeaderLongLineStored does the same once through the store, where the
// message starts after its envelope in the file.
func TestHeaderLongLineStored(t *testing.T) {
	_, a := newAccount(t)
	header := "From: alice@example.org\r\nX-Long: " + strings.Repeat("y", 4095-8) + "\r\nTo: bob@example.net\r\nSubject: hi\r\n"
	env, err := inject(t, a, submission(t), header+"\r\nbody\r\n", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Header()
	if err != nil || string(h) != header {
		t.Fatalf("Header() = %d octets, %v; want %d", len(h), err, len(header))
	}
	if got := string(mailmsg.Summary(h)); got != "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n" {
		t.Fatalf("Summary = %q", got)
	}
}

// FuzzHeader compares Header with headerOf on a message made of a prefix,
// a run of n%13000 octets 'x' (so that lines reach the read buffer's edges
// at one, two and three times 4 KiB) and a suffix.
func FuzzHeader(f *testing.F) {
	for _, n := range []uint16{4087, 4088, 4089, 8183, 8184, 8185, 12279, 12280} {
		f.Add([]byte("X-Long: "), n, []byte("\r\nTo: b@c\r\n\r\nbody\r\n"))
		f.Add([]byte("From: a@b\nX-Long: "), n, []byte("\nTo: b@c\n\nbody\n"))
	}
	f.Add([]byte("\r\n"), uint16(0), []byte("body"))
	f.Add([]byte("A: b\r\n"), uint16(4094), []byte("\r\n\r\n"))
	f.Add([]byte(""), uint16(0), []byte("no line end"))
	f.Fuzz(func(t *testing.T, prefix []byte, n uint16, suffix []byte) {
		msg := append(append(append([]byte{}, prefix...), bytes.Repeat([]byte("x"), int(n)%13000)...), suffix...)
		h, err := messageOf(t, msg).Header()
		if err != nil {
			t.Fatal(err)
		}
		if want := headerOf(msg); !bytes.Equal(h, want) {
			t.Fatalf("Header() = %d octets, want %d: prefix %q, %d x, suffix %q", len(h), len(want), prefix, int(n)%13000, suffix)
		}
	})
}
