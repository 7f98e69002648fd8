package trace

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/wire"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":         "alice@example.org",
		"ceo@bank.example\nFrom x":  `ceo@bank.example\nFrom x`,
		"a\rb\x1b[2Jc\x00d\x7fe\tf": `a\rb\x1b[2Jc\x00d\x7fe\tf`,
		"back\\slash":               `back\\slash`,
		"caf\xc3\xa9 \xff":          `café \xff`,
		"\u202egnp.exe":             `\u202egnp.exe`,
		"c1\u0085":                  `c1\u0085`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		for _, r := range Escape(in) {
			if r < 0x20 || r == 0x7f {
				t.Errorf("Escape(%q) has %q", in, r)
			}
		}
	}
}

func stamp(where string) Stamp {
	l, _ := wire.ParseLocation(where)
	id, _ := msgid.Parse("00112233445566778899aabbccddeeff")
	return Stamp{Sender: addr.Mailbox{Local: "alice", Domain: "example.org"}, Store: l, ID: id, By: "example.net",
		Prog: "im2000-fetch", At: time.Date(2026, 12, 2, 4, 30, 0, 0, time.UTC)}
}

func TestApply(t *testing.T) {
	msg := "Return-Path: <ceo@bank.example>\r\nFrom: alice@example.org\r\nreturn-path:\r\n <x@y>\r\nSubject: hi\r\n\r\nReturn-Path: <body@stays>\r\nbody\r\n"
	got, err := stamp("127.0.0.1:4002").Apply([]byte(msg), false)
	if err != nil {
		t.Fatal(err)
	}
	want := "Return-Path: <alice@example.org>\r\n" +
		"Received: from [127.0.0.1] ([127.0.0.1]) (store 127.0.0.1:4002) by\r\n" +
		" example.net (im2000-fetch) with MSRAP id 00112233445566778899aabbccddeeff;\r\n Wed, 02 Dec 2026 04:30:00 +0000\r\n" +
		"From: alice@example.org\r\nSubject: hi\r\n\r\nReturn-Path: <body@stays>\r\nbody\r\n"
	if string(got) != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}

	// The header alone (MSRAP headersonly: no blank line after it).
	got, err = stamp("example.org").Apply([]byte("Return-Path: <x@y>\r\nSubject: hi\r\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "Return-Path: <alice@example.org>\r\nReceived: from example.org by example.net (im2000-fetch)") ||
		!strings.HasSuffix(string(got), "+0000\r\nSubject: hi\r\n") || strings.Count(string(got), "Return-Path") != 1 {
		t.Errorf("headers only: %q", got)
	}

	// No header at all, bare LF, an IPv6 store.
	got, err = stamp("[::1]:4002").Apply([]byte("just text\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "from [IPv6:::1] ([IPv6:::1]) (store [::1]:4002)") || !strings.HasSuffix(string(got), "\r\n\r\njust text\r\n") {
		t.Errorf("no header: %q", got)
	}
}

// oneByte reads one octet at a time, as a slow store's pages may come.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// FuzzStampWrite: the streaming Write, fed an octet at a time, gives what
// Apply gives on the whole message, and what the in-memory way (header
// read, fields added, written, the blank line trimmed for headers only)
// gives.
func FuzzStampWrite(f *testing.F) {
	f.Add([]byte("Return-Path: <x@y>\r\nSubject: a\r\n\r\nbody\r\n"), false)
	f.Add([]byte("Subject: a\nX: b\n"), true)
	f.Add([]byte("not a header\r\n\r\n"), false)
	st := Stamp{Sender: addr.Mailbox{Local: "alice", Domain: "example.org"}, By: "me.example", Prog: "test", At: time.Unix(0, 0)}
	f.Fuzz(func(t *testing.T, msg []byte, headersOnly bool) {
		var streamed bytes.Buffer
		_, serr := st.Write(&streamed, oneByte{bytes.NewReader(msg)}, headersOnly)
		whole, aerr := st.Apply(msg, headersOnly)
		if (serr == nil) != (aerr == nil) {
			t.Fatalf("errors differ: %v, %v", serr, aerr)
		}
		if serr != nil {
			return
		}
		if !bytes.Equal(streamed.Bytes(), whole) {
			t.Fatalf("streamed %q, whole %q", streamed.Bytes(), whole)
		}
		m, err := mailmsg.Read(bufio.NewReader(bytes.NewReader(msg)))
		if err != nil {
			t.Fatal(err)
		}
		m.Header.Del("Return-Path")
		m.Header.Add("Received", st.Received())
		m.Header.Add("Return-Path", "<alice@example.org>")
		var ref bytes.Buffer
		m.WriteTo(&ref)
		want := ref.Bytes()
		if headersOnly {
			want = bytes.TrimSuffix(want, []byte("\r\n"))
		}
		if !bytes.Equal(whole, want) {
			t.Fatalf("got %q, want %q", whole, want)
		}
	})
}
