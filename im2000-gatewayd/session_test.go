package main

import (
	"bufio"
	"bytes"
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
	}
	for _, c := range cases {
		if got := copied(t, c.in, "example.org"); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
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
	f.Fuzz(func(t *testing.T, msg string) {
		got := copied(t, msg, "example.org")
		if len(got) > len(msg) {
			t.Fatalf("%q became longer: %q", msg, got)
		}
		if !strings.Contains(strings.ToLower(msg), "authentication-results") && got != msg {
			t.Fatalf("%q changed: %q", msg, got)
		}
	})
}
