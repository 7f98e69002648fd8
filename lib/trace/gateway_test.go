package trace

import (
	"bufio"
	"strings"
	"testing"
)

// TestViaSMTP: a trusted gateway's first line, its Return-Path, becomes
// "via SMTP from" in Received and is removed like every Return-Path; the
// same line from a sender that is not a trusted gateway says nothing, nor
// does a Return-Path that is not the first line.
func TestViaSMTP(t *testing.T) {
	cases := []struct {
		msg     string
		gateway bool
		via     string // "" for no via comment
	}{
		{"Return-Path: <carol@smtp.example>\r\nSubject: x\r\n\r\nbody\r\n", true, "(via SMTP from <carol@smtp.example>)"},
		{"Return-Path: <>\r\nSubject: x\r\n\r\nbody\r\n", true, "(via SMTP from <>)"},
		{"Return-Path: <\"a(b)\\\\c\"@smtp.example>\r\n\r\nbody\r\n", true, `(via SMTP from <"a\(b\)\\\\c"@smtp.example>)`},
		{"Return-Path: <carol@smtp.example>\r\nSubject: x\r\n\r\nbody\r\n", false, ""},
		{"Subject: x\r\nReturn-Path: <carol@smtp.example>\r\n\r\nbody\r\n", true, ""},
		{"Return-Path: carol@smtp.example\r\n\r\nbody\r\n", true, ""},
		{"Return-Path: <not an address>\r\n\r\nbody\r\n", true, ""},
		{"Return-Path: <carol@smtp.example\x1b[2J>\r\n\r\nbody\r\n", true, ""},
	}
	for _, c := range cases {
		st := stamp("store.example.org")
		st.Gateway = c.gateway
		out, err := st.Apply([]byte(c.msg), false)
		if err != nil {
			t.Fatalf("%q: %v", c.msg, err)
		}
		got := string(out)
		if strings.Count(got, "Return-Path:") != 1 || !strings.HasPrefix(got, "Return-Path: <alice@example.org>\r\n") {
			t.Errorf("%q: the Return-Path is not the verified sender alone:\n%s", c.msg, got)
		}
		received, _, _ := strings.Cut(got[strings.Index(got, "Received:"):], "\r\n\r\n")
		if c.via == "" && strings.Contains(received, "via SMTP") || c.via != "" && !strings.Contains(strings.ReplaceAll(received, "\r\n", ""), c.via) {
			t.Errorf("%q (gateway %v): Received is\n%s\nwant %q", c.msg, c.gateway, received, c.via)
		}
	}
}

// FuzzViaSMTP: whatever a gateway's first line holds, the reader's
// Received field stays one field (no line end but its folds), the message
// keeps exactly one Return-Path (the verified sender's) in its header, and
// viaSMTP says "" or one bracketed address.
func FuzzViaSMTP(f *testing.F) {
	f.Add("Return-Path: <carol@smtp.example>\r\nSubject: x\r\n\r\nbody\r\n")
	f.Add("Return-Path: <>\r\n\r\n")
	f.Add("Return-Path: <\"a)(\\\\\"@x.example>\r\n\r\n")
	f.Add("Return-Path: <a@b.example>\rReturn-Path: <c@d.example>\r\n\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		st := stamp("store.example.org")
		st.Gateway = true
		out, err := st.Apply([]byte(msg), false)
		if err != nil {
			return // a header too large: refused, as without Gateway
		}
		head, _, _ := strings.Cut(string(out), "\r\n\r\n")
		var fields []string
		for _, l := range strings.Split(head, "\r\n") {
			if l != "" && l[0] != ' ' && l[0] != '\t' {
				fields = append(fields, l)
			}
		}
		rp := 0
		for _, fl := range fields {
			if name, _, ok := strings.Cut(fl, ":"); ok && strings.EqualFold(strings.TrimRight(name, " \t"), "Return-Path") {
				rp++
			}
		}
		if rp != 1 || !strings.HasPrefix(string(out), "Return-Path: <alice@example.org>\r\nReceived: from store.example.org ") {
			t.Fatalf("%q gave the header\n%s", msg, head)
		}
		if len(fields) < 2 || !strings.HasPrefix(fields[1], "Received: ") {
			t.Fatalf("%q: the Received field is not one field:\n%s", msg, head)
		}
		if v := viaSMTP(bufio.NewReader(strings.NewReader(msg))); v != "" && (!strings.HasPrefix(v, "<") || !strings.HasSuffix(v, ">") || strings.ContainsAny(v, "\r\n")) {
			t.Fatalf("%q: via %q", msg, v)
		}
	})
}
