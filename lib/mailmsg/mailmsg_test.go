package mailmsg

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"im2000/lib/addr"
)

func read(t testing.TB, s string) *Message {
	m, err := Read(bufio.NewReader(strings.NewReader(s)))
	if err != nil {
		t.Fatalf("Read(%q): %v", s, err)
	}
	return m
}

func defaults() Defaults {
	from, _ := addr.Parse("alice@example.org")
	return Defaults{From: from, FullName: "Alice A.", Date: time.Unix(1700000000, 0).UTC(), MessageID: "0123@example.org"}
}

func TestPrepare(t *testing.T) {
	m := read(t, "To: Bob <bob@example.net>, carol@example.com\nCc: dave@x.org\nBcc: eve@y.org, bob@example.net\nSubject: hi\n\nline one\nline two\n")
	rcpts, err := m.Recipients()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rcpts {
		got = append(got, r.String())
	}
	if strings.Join(got, " ") != "bob@example.net carol@example.com dave@x.org eve@y.org" {
		t.Fatalf("Recipients = %v", got)
	}
	m.Complete(defaults())
	var out bytes.Buffer
	if _, err := m.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"From: \"Alice A.\" <alice@example.org>\r\n", "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
		"Message-Id: <0123@example.org>\r\n", "Subject: hi\r\n", "\r\n\r\nline one\r\nline two\r\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "eve@") {
		t.Errorf("Bcc survived:\n%s", s)
	}
}

func TestKeepsExistingFields(t *testing.T) {
	m := read(t, "From: Someone <s@x.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <keep@x>\r\n\r\nbody\r\n")
	m.Complete(defaults())
	var out bytes.Buffer
	m.WriteTo(&out)
	s := out.String()
	if !strings.Contains(s, "From: Someone <s@x.org>\r\n") || !strings.Contains(s, "<keep@x>") || strings.Contains(s, "2023") {
		t.Fatalf("existing fields changed:\n%s", s)
	}
}

func TestBareBody(t *testing.T) {
	m := read(t, "just a line of text\nand another: with a colon\n")
	if m.Header.Len() != 0 {
		t.Fatalf("header = %v", m.Header.Map())
	}
	body, _ := io.ReadAll(m.Body)
	if string(body) != "just a line of text\nand another: with a colon\n" {
		t.Fatalf("body = %q", body)
	}
	m = read(t, "Subject: x\nthis is body\n")
	body, _ = io.ReadAll(m.Body)
	if m.Header.Get("Subject") != "x" || string(body) != "this is body\n" {
		t.Fatalf("header %v body %q", m.Header.Map(), body)
	}
}

func TestBadRecipients(t *testing.T) {
	for _, s := range []string{"To: not an address\n\n", "To: bob@\n\n", "Cc: <a@[1.2.3.4]>\n\n"} {
		if r, err := read(t, s).Recipients(); err == nil {
			t.Errorf("%q: accepted %v", s, r)
		}
	}
}

func TestHeaderTooLarge(t *testing.T) {
	big := "X-Big: " + strings.Repeat("a", MaxHeader) + "\n\n"
	if _, err := Read(bufio.NewReader(strings.NewReader(big))); err != ErrHeaderTooLarge {
		t.Fatalf("err = %v", err)
	}
}

func TestCRLFWriter(t *testing.T) {
	var out bytes.Buffer
	w := NewCRLFWriter(&out)
	for _, p := range []string{"a\nb\r", "\nc\r\n", "\n", "d"} {
		w.Write([]byte(p))
	}
	if out.String() != "a\r\nb\r\nc\r\n\r\nd" {
		t.Fatalf("got %q", out.String())
	}
}

func TestDotReader(t *testing.T) {
	cases := map[string]string{
		"a\n.\nb\n":   "a\n",
		"a\r\n.\r\nb": "a\r\n",
		"a\n..\nb\n":  "a\n..\nb\n",
		"a\n.":        "a\n.",
		".x\n":        ".x\n",
		"no end":      "no end",
		".\n":         "",
		"x\n . \n.\n": "x\n . \n",
		"long " + strings.Repeat("z", 5000) + "\n.\n": "long " + strings.Repeat("z", 5000) + "\n",
	}
	for in, want := range cases {
		got, err := io.ReadAll(iotest.OneByteReader(NewDotReader(strings.NewReader(in))))
		if err != nil || string(got) != want {
			t.Errorf("DotReader(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzPrepare feeds arbitrary input through the whole preparation and checks
// that the output is a message whose header parses again, has From and Date,
// and has no Bcc.
func FuzzPrepare(f *testing.F) {
	for _, s := range []string{
		"To: a@b.c\nBcc: d@e.f\nSubject: x\n\nbody\n",
		"plain body\n",
		"From: x@y\r\n\r\n",
		"To: \"q u\"@x, <y@z>\n folded: no\n\n",
		" leading space\n",
		"Subject: =?utf-8?q?caf=C3=A9?=\n\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		m.Recipients()
		m.Complete(defaults())
		var out bytes.Buffer
		if _, err := m.WriteTo(&out); err != nil {
			return
		}
		again, err := Read(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, out.Bytes())
		}
		if !again.Header.Has("From") || !again.Header.Has("Date") || again.Header.Has("Bcc") {
			t.Fatalf("output header wrong: %v", again.Header.Map())
		}
	})
}
