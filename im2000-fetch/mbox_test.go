package main

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// quoted is mboxrd quoting done the plain way, on the whole message in
// memory, as im2000-fetch did before it streamed.
func quoted(msg string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.ReplaceAll(msg, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
			b.WriteString(">")
		}
		b.WriteString(line)
	}
	if !strings.HasSuffix(b.String(), "\n") && b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String() + "\n"
}

func TestWriteMbox(t *testing.T) {
	msg := "Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From  x\r\n>Fro\r\nFrom"
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := writeMbox(w, "alice@example.org", time.Unix(0, 0), strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	want := "From alice@example.org Thu Jan  1 00:00:00 1970\nSubject: x\n\n>From here\n>>From there\n>>>From  x\n>Fro\nFrom\n\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

// FuzzMboxrd: the streaming quoting, fed in chunks of any size, writes
// what quoting the whole message at once writes.
func FuzzMboxrd(f *testing.F) {
	f.Add("From a\r\n>From b\n>>Fro\r\n\r\nFrom", uint8(1))
	f.Add(">>>>\r\nFrom \r", uint8(2))
	f.Fuzz(func(t *testing.T, msg string, chunk uint8) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		n := int(chunk%9) + 1
		if err := writeMbox(w, "a@b", time.Unix(0, 0), &chunked{s: msg, n: n}); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		got := strings.TrimPrefix(out.String(), "From a@b Thu Jan  1 00:00:00 1970\n")
		if want := quoted(msg); got != want && msg != "" {
			t.Fatalf("%q in chunks of %d:\n got %q\nwant %q", msg, n, got, want)
		}
	})
}

// chunked reads s n octets at a time.
type chunked struct {
	s string
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}
