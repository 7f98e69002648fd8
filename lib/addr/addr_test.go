package addr

import (
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]string{
		"bob@example.org":           "bob@example.org",
		"Bob.Smith@Example.ORG":     "Bob.Smith@example.org",
		`"john doe"@example.org`:    `"john doe"@example.org`,
		`"a\"b"@x.y`:                `"a\"b"@x.y`,
		`"plain"@x`:                 "plain@x",
		"user+tag@sub.example.net":  "user+tag@sub.example.net",
		"jörg@bücher.example":       "jörg@bücher.example",
		"a@b-c.d":                   "a@b-c.d",
		"weird@at@sign@example.org": "", // rejected below
	}
	for in, want := range good {
		m, err := Parse(in)
		if want == "" {
			if err == nil {
				t.Errorf("Parse(%q) accepted as %v", in, m)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got := m.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", in, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"", "bob", "@example.org", "bob@", "bob@.org", "bob@org.", "bob@-x.org",
		"bob@x-.org", ".bob@x", "bob.@x", "b..ob@x", "bo b@x", "<bob@x>", "bob@[127.0.0.1]",
		"\"\"@x", "\"a\nb\"@x", "bob@exa mple.org", "bob@exa_mple.org", "\xff@x"} {
		if m, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted as %q", in, m)
		}
	}
}

func TestLabels(t *testing.T) {
	m, _ := Parse("a@mail.example.org")
	l := m.Labels()
	if len(l) != 3 || l[0] != "mail" || l[2] != "org" {
		t.Fatalf("Labels = %q", l)
	}
	back, err := New(m.Local, l)
	if err != nil || back != m {
		t.Fatalf("New = %v, %v", back, err)
	}
}

// FuzzParse checks that whatever Parse accepts prints to a form that parses
// back to the same mailbox, and that it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"bob@example.org", `"x y"@z`, "a.b@c.d", "jörg@bücher.example", "@", `"\"`, "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(m.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %v, but its String %q does not parse: %v", s, m, m.String(), err)
		}
		if back != m {
			t.Fatalf("round trip of %q: %v != %v", s, back, m)
		}
		if _, err := New(m.Local, m.Labels()); err != nil {
			t.Fatalf("New(%q, %q): %v", m.Local, m.Labels(), err)
		}
	})
}
