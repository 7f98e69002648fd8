package main

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func copied(t testing.TB, msg, me string) string {
	var b bytes.Buffer
	if err := copyMessage(&b, bufio.NewReader(strings.NewReader(msg)), me); err != nil {
		t.Fatalf("%q: %v", msg, err)
	}
	return b.String()
}

// TestCopyMessage: Authentication-Results fields claiming this host's
// authserv-id leave the header, with their continuation lines; others,
// and anything in the body, stay as they were.
func TestCopyMessage(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n"},
		{"Authentication-Results: example.org; spf=pass\r\nSubject: x\r\n\r\nb\r\n", "Subject: x\r\n\r\nb\r\n"},
		{"Subject: x\r\nauthentication-results: EXAMPLE.ORG;\r\n\tspf=pass smtp.mailfrom=a@b\r\n dkim=pass\r\nTo: y\r\n\r\nb\r\n", "Subject: x\r\nTo: y\r\n\r\nb\r\n"},
		{"Authentication-Results: other.example; spf=pass\r\n\r\nb\r\n", "Authentication-Results: other.example; spf=pass\r\n\r\nb\r\n"},
		{"Authentication-Results: example.org (unparsable\r\n\r\nb\r\n", "\r\nb\r\n"},
		{"Authentication-Results: example.org.evil; spf=pass\r\n\r\nb\r\n", "Authentication-Results: example.org.evil; spf=pass\r\n\r\nb\r\n"},
		{"Subject: x\r\n\r\nAuthentication-Results: example.org; spf=pass\r\n", "Subject: x\r\n\r\nAuthentication-Results: example.org; spf=pass\r\n"},
		{"Subject: x\nAuthentication-Results: example.org; none\n\nb\n", "Subject: x\n\nb\n"},
		{"not a header line\r\nAuthentication-Results: example.org; none\r\n", "not a header line\r\nAuthentication-Results: example.org; none\r\n"},
		{"Authentication-Results: example.org; none", ""},
		{"Authentication-Results: (a comment) \"example.org\"; none\r\n\r\nb", "\r\nb"},
		{"Authentication-Results:\r\n example.org; none\r\nTo: y\r\n\r\nb", "To: y\r\n\r\nb"},
		{"", ""},
		// The hostile review's (issue 20): comments nest and hold
		// quoted-pairs; a final dot names the same host; a field whose
		// authserv-id cannot be read claims this host too.
		{"Authentication-Results: (checked (by) us) example.org; dkim=pass header.d=paypal.com\r\nSubject: x\r\n\r\nb", "Subject: x\r\n\r\nb"},
		{"Authentication-Results: (\\)) example.org; spf=pass\r\nSubject: x\r\n\r\nb", "Subject: x\r\n\r\nb"},
		{"Authentication-Results: EXAMPLE.org.; dkim=pass\r\nSubject: x\r\n\r\nb", "Subject: x\r\n\r\nb"},
		{"Authentication-Results: (unclosed (x) other.example; none\r\nSubject: x\r\n\r\nb", "Subject: x\r\n\r\nb"},
		{"Authentication-Results: (a (b) c) other.example; none\r\n\r\nb", "Authentication-Results: (a (b) c) other.example; none\r\n\r\nb"},
	}
	for _, c := range cases {
		if got := copied(t, c.in, "example.org"); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestCopyMessageFirstFolded: a message whose first line is a
// continuation line would continue the gateway's own
// Authentication-Results field, written just above it; it is refused
// and nothing is written (the reviewer's forged "dkim=pass" for
// paypal.com under this host's authserv-id).
func TestCopyMessageFirstFolded(t *testing.T) {
	for _, msg := range []string{
		"\tdkim=pass header.d=paypal.com header.i=@paypal.com;\r\n spf=pass smtp.mailfrom=service@paypal.com\r\nFrom: service@paypal.com\r\n\r\nbody\r\n",
		" dkim=pass\r\n\r\nb\r\n",
		" \r\nSubject: x\r\n\r\n",
		"\t" + strings.Repeat("a", 5000) + "\r\n\r\nb", // longer than the reader's buffer
	} {
		var b bytes.Buffer
		err := copyMessage(&b, bufio.NewReader(strings.NewReader(msg)), "example.org")
		if !errors.Is(err, errFirstFolded) || b.Len() != 0 {
			t.Errorf("%.40q: err %v, wrote %q", msg, err, b.String())
		}
	}
}

// FuzzCopyMessage: a message without an Authentication-Results field is
// copied octet for octet; none is ever longer than it came; nothing panics.
func FuzzCopyMessage(f *testing.F) {
	f.Add("Subject: x\r\n\r\nbody\r\n")
	f.Add("Authentication-Results: example.org; spf=pass\r\n\tdkim=none\r\nSubject: x\r\n\r\nb\r\n")
	f.Add("Authentication-Results: example.org (\r\n\r\n")
	f.Add(strings.Repeat("X-Long: "+strings.Repeat("a", 900)+"\r\n", 100) + "\r\nb")
	f.Add("\tdkim=pass header.d=paypal.com;\r\n spf=pass\r\nFrom: a@b\r\n\r\nb\r\n")
	f.Add(" \r\n\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		if msg != "" && (msg[0] == ' ' || msg[0] == '\t') {
			var b bytes.Buffer
			if err := copyMessage(&b, bufio.NewReader(strings.NewReader(msg)), "example.org"); !errors.Is(err, errFirstFolded) || b.Len() != 0 {
				t.Fatalf("%q: err %v, wrote %q", msg, err, b.String())
			}
			return
		}
		got := copied(t, msg, "example.org")
		if got != "" && (got[0] == ' ' || got[0] == '\t') {
			t.Fatalf("%q: copy starts folded, continuing the gateway's field: %q", msg, got)
		}
		if len(got) > len(msg) {
			t.Fatalf("%q became longer: %q", msg, got)
		}
		if !strings.Contains(strings.ToLower(msg), "authentication-results") && got != msg {
			t.Fatalf("%q changed: %q", msg, got)
		}
	})
}

// TestCopyRemovesNonASCIIClaim (second hostile review of issue 20): a
// field naming the gateway's authserv-id followed by U+00A0, which
// go-msgauth reads as the gateway's, is removed.
func TestCopyRemovesNonASCIIClaim(t *testing.T) {
	in := "Authentication-Results: example.org\u00a0; dkim=pass header.d=paypal.com\r\nSubject: x\r\n\r\nb\r\n"
	if got := copied(t, in, "example.org"); strings.Contains(got, "paypal") {
		t.Errorf("gateway example.org kept %q", got)
	}
}
