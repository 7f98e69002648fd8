package trace

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
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
// Apply gives on the whole message, and what the old in-memory way gave
// (header read by mailmsg into textproto's map, fields added, written, the
// blank line trimmed for headers only), but for the bare CRs and NULs of
// the header, which are now spaces.
func FuzzStampWrite(f *testing.F) {
	f.Add([]byte("Return-Path: <x@y>\r\nSubject: a\r\n\r\nbody\r\n"), false)
	f.Add([]byte("Subject: a\nX: b\n"), true)
	f.Add([]byte("not a header\r\n\r\n"), false)
	f.Add([]byte("Subject: a\rReturn-Path: <ceo@bank.example>\r\nX: \x00\r\r\n\r\nbody\r\x00\r\n"), false)
	f.Add([]byte("return-path : <a@b>\r\n  <c@d>\r\nX: y\r"), true)
	f.Add([]byte("Authentication-Results: me.example; dkim=pass header.d=bank.example\r\nSubject: a\r\n\r\nb\r\n"), false)
	f.Add([]byte("Subject: a\r\nauthentication-results :\r\n (c) \"ME.example\";\r\n\tspf=pass\r\nAuthentication-Results: other.example; none\r\n"), true)
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
		if want := oldWay(t, st, msg, headersOnly); !bytes.Equal(whole, want) {
			t.Fatalf("got %q, want %q", whole, want)
		}
	})
}

// oldWay is Write as it was before it streamed the header: the header in
// textproto's map, Return-Path deleted, the trace fields added. Then the
// header's bare CRs and NULs are made spaces, as Write now does.
func oldWay(t *testing.T, st Stamp, msg []byte, headersOnly bool) []byte {
	m, err := mailmsg.Read(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Del("Return-Path")
	for ar := m.Header.FieldsByKey("Authentication-Results"); ar.Next(); {
		// A NUL is a space in what Write reads, as here.
		if Claims(strings.ReplaceAll(ar.Value(), "\x00", " "), st.By) {
			ar.Del()
		}
	}
	m.Header.Add("Received", st.Received())
	m.Header.Add("Return-Path", "<alice@example.org>")
	var ref bytes.Buffer
	m.WriteTo(&ref)
	out := ref.Bytes()
	// The header ends at the first empty line: none of its lines is empty.
	end := bytes.Index(out, []byte("\r\n\r\n")) + 2
	hdr := out[:end]
	for i, c := range hdr {
		if c == 0 || c == '\r' && (i+1 == len(hdr) || hdr[i+1] != '\n') {
			hdr[i] = ' '
		}
	}
	if headersOnly {
		out = bytes.TrimSuffix(out, []byte("\r\n"))
	}
	return out
}

// TestWriteBareCR: a lone CR or a NUL in a header line cannot start a
// field a client would see (a second Return-Path): they are spaces.
func TestWriteBareCR(t *testing.T) {
	msg := "Subject: a\rReturn-Path: <ceo@bank.example>\r\nX: b\x00Return-Path: <c@d>\r\n\r\nbody\rstays\r\n"
	got, err := stamp("example.org").Apply([]byte(msg), false)
	if err != nil {
		t.Fatal(err)
	}
	hdr, body, _ := strings.Cut(string(got), "\r\n\r\n")
	if strings.Contains(hdr, "\x00") || strings.Count(hdr, "\r") != strings.Count(hdr, "\r\n") {
		t.Errorf("a bare CR or a NUL in the header: %q", hdr)
	}
	if !strings.Contains(hdr, "\r\nSubject: a Return-Path: <ceo@bank.example>\r\nX: b Return-Path: <c@d>") {
		t.Errorf("header %q", hdr)
	}
	if body != "body\rstays\r\n" {
		t.Errorf("the body changed: %q", body)
	}
}

// TestWriteManyFieldsMemory: a header of 1 MiB of empty fields (349,000
// of them) is streamed, not parsed into a map: it cost 156 MiB of heap
// when it was; now the allocations stay a few times the message's size.
func TestWriteManyFieldsMemory(t *testing.T) {
	for _, line := range []string{"a:\r\n", "a:\n", "X-Long: " + strings.Repeat("y", 100000) + "\r\n"} {
		msg := []byte(strings.Repeat(line, (mailmsg.MaxHeader-100)/len(line)) + "\r\nbody\r\n")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n, err := stamp("example.org").Write(io.Discard, bytes.NewReader(msg), false)
		runtime.ReadMemStats(&after)
		if err != nil || n < int64(len(msg)) {
			t.Fatalf("%q: %d octets, %v", line[:3], n, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("%q x %d: %d MiB allocated for a 1 MiB message", line[:3], len(msg)/len(line), alloc>>20)
		}
	}
}

// TestAuthservID: the first word of an Authentication-Results value, as a
// host that checks for its own name reads it; a line end is never part
// of it, even after an unterminated quote. Comments before it nest and
// hold quoted-pairs (RFC 5322): the hostile review's "(a (b) c)" and
// "(\))" were read as claiming "c)" and ")". What cannot be read (a
// comment or a quote not closed, no word) is not ok.
func TestAuthservID(t *testing.T) {
	type res struct {
		id string
		ok bool
	}
	for v, want := range map[string]res{
		" me.example; spf=pass":               {"me.example", true},
		" (comment) \"me.example\"; none":     {"me.example", true},
		"\"ME.eXAmple\r\n":                    {"ME.eXAmple", false},
		"\"me.example\r\n\t; spf=pass\r\n":    {"me.example", false},
		" \"me\\.exa\r\n mple\"; none":        {"me.exa mple", true},
		" me.example\r\n":                     {"me.example", true},
		" (unclosed comment me.example\r\n":   {"", false},
		" (a (b) c) me.example; dkim=pass":    {"me.example", true},
		` (\)) me.example; spf=pass`:          {"me.example", true},
		" (\\) me.example; spf=pass":          {"", false}, // one comment, not closed
		` (\\\\) me.example; spf=pass`:        {"me.example", true},
		" (a (b) me.example; spf=pass":        {"", false},
		" (\\) me.example)":                   {"", false}, // one comment, then nothing
		"(x)(y)\r\n (z (\\( w)) me.example.;": {"me.example.", true},
		" me.example/other; none":             {"me.example", true},
		" ; spf=pass":                         {"", false},
		"":                                    {"", false},
	} {
		if id, ok := AuthservID(v); id != want.id || ok != want.ok {
			t.Errorf("AuthservID(%q) = %q, %v, want %q, %v", v, id, ok, want.id, want.ok)
		}
	}
}

// TestClaims: a value claims a host by its authserv-id in any case, with
// or without a final dot, and claims every host when it cannot be read.
func TestClaims(t *testing.T) {
	for _, c := range []struct {
		v    string
		host string
		want bool
	}{
		{" example.org.; dkim=pass", "example.org", true},
		{" EXAMPLE.ORG; dkim=pass", "example.org.", true},
		{" example.org.evil; dkim=pass", "example.org", false},
		{" other.example; spf=pass", "example.org", false},
		{" (checked (by) us) example.org; dkim=pass header.d=paypal.com", "example.org", true},
		{` (\)) example.org; spf=pass smtp.mailfrom=ceo@paypal.com`, "example.org", true},
		{" (unclosed (x) other.example; none", "example.org", true},
		{" \"unclosed; none", "example.org", true},
	} {
		if got := Claims(c.v, c.host); got != c.want {
			t.Errorf("Claims(%q, %q) = %v, want %v", c.v, c.host, got, c.want)
		}
	}
}
