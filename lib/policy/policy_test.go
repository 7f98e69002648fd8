package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"im2000/lib/addr"
)

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse("senderpolicy", strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decide(t *testing.T, p *Policy, sender string) Verdict {
	t.Helper()
	m, err := addr.Parse(sender)
	if err != nil {
		t.Fatal(err)
	}
	return p.Decide(m).Verdict
}

func TestDecide(t *testing.T) {
	p := mustParse(t, `# bob's senders
allow alice@example.org
allow @Example.ORG
deny  mallory@example.org
deny @spam.example
allow friend@spam.example
deny @.spam.example
allow @.ok.spam.example
allow twice@example.net
deny twice@example.net
	default	hold
`)
	for _, c := range []struct {
		sender string
		want   Verdict
	}{
		{"alice@example.org", Fetch},
		{"ALICE@EXAMPLE.ORG", Fetch},
		{"carol@example.org", Fetch},   // the domain
		{"mallory@example.org", Deny},  // address over domain
		{"Mallory@Example.Org", Deny},  // no dodging by capitals
		{"x@spam.example", Deny},       // the domain
		{"friend@spam.example", Fetch}, // address over domain
		{"x@a.b.spam.example", Deny},   // subdomain pattern
		{"x@z.ok.spam.example", Fetch}, // the longer pattern
		{"x@ok.spam.example", Deny},    // @.ok.spam.example is its subdomains only
		{"twice@example.net", Deny},    // deny over allow at equal specificity
		{"x@example.net", Hold},        // the default
		{"x@notspam.example", Hold},    // a suffix that is not a parent domain
		{"x@org", Hold},
	} {
		if got := decide(t, p, c.sender); got != c.want {
			t.Errorf("%s: %v, want %v", c.sender, got, c.want)
		}
	}
	if m := p.Decide(addr.Mailbox{Local: "x", Domain: "example.net"}); m.Line != 11 {
		t.Errorf("the default's line: %d", m.Line)
	}
	if got := decide(t, mustParse(t, ""), "x@example.net"); got != Fetch {
		t.Errorf("the empty policy: %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"allow\n", "senderpolicy:1: allow what?"},
		{"\n\npermit a@b.example\n", "senderpolicy:3: want allow, deny or default"},
		{"default hold\ndefault fetch\n", "senderpolicy:2: a second default line (the first is line 1)"},
		{"default deny\n", "senderpolicy:1: want \"default fetch\" or \"default hold\""},
		{"deny @bad..example\n", "senderpolicy:1: \"@bad..example\" is not a domain"},
		{"deny @a@b.example\n", "not a domain"},
		{"allow alice\n", "senderpolicy:1: \"alice\" is not an address"},
		{"allow a\x1bb@example.org\n", "is not an address"},
		{"Allow a@example.org\n", "want allow, deny or default"},
		{strings.Repeat("#", MaxSize+1), "over 1048576 octets"},
	} {
		_, err := Parse("senderpolicy", strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}

func TestAllow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "senderpolicy")
	if p, err := Load(path); err != nil || p.Default != Fetch {
		t.Fatalf("a missing file: %v %v", p, err)
	}
	if err := os.WriteFile(path, []byte("# mine\ndefault hold\ndeny @spam.example"), 0o640); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := Allow(path, "alice@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	if string(b) != "# mine\ndefault hold\ndeny @spam.example\nallow alice@example.org\n" {
		t.Errorf("after Allow: %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	p, err := Load(path)
	if err != nil || decide(t, p, "alice@example.org") != Fetch || decide(t, p, "bob@example.org") != Hold {
		t.Errorf("after Allow: %v", err)
	}
	if err := Allow(path, "@spam.example"); err == nil || !strings.Contains(err.Error(), "line 3 denies @spam.example") {
		t.Errorf("Allow over a deny: %v", err)
	}
	if err := Allow(path, "not an address"); err == nil {
		t.Error("Allow took a bad argument")
	}
	os.WriteFile(path, []byte("bogus\n"), 0o600)
	if err := Allow(path, "alice@example.org"); err == nil || !strings.Contains(err.Error(), ":1: ") {
		t.Errorf("Allow on a broken file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "bogus\n" {
		t.Errorf("a broken file was changed: %q", b)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		if _, err := Load(fifo); err == nil {
			t.Error("Load read a FIFO")
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 { // and senderpolicy.lock
		t.Errorf("debris left: %v", entries)
	}
}

// FuzzParse: any input parses or fails with a name:line message, never a
// panic; what parses decides without panicking, and a parsed address
// rule decides its own address.
func FuzzParse(f *testing.F) {
	f.Add("allow alice@example.org\ndeny @spam.example\ndefault hold\n", "alice@example.org")
	f.Add("deny @.spam.example\n# c\n\n", "x@a.spam.example")
	f.Add("allow \"a b\"@example.org\n", "\"a b\"@example.org")
	f.Add("default fetch\ndefault hold\n", "x@y.z")
	f.Fuzz(func(t *testing.T, in, sender string) {
		p, err := Parse("f", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		m, err := addr.Parse(sender)
		if err != nil {
			return
		}
		p.Decide(m)
		q, err := Parse("f", strings.NewReader("allow "+m.String()+"\n"+in))
		if err == nil && q.Decide(m).Verdict == Hold {
			t.Fatalf("%q allowed is held", m)
		}
	})
}
