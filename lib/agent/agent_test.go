package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/addr"
)

func TestCheckSender(t *testing.T) {
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 61)
	// A mailbox lib/addr parses but that is 384 octets long with its quoting.
	quoted := `"` + strings.Repeat(`\"`, 64) + `"` + long[64:]
	for _, s := range []string{"alice@example.org", "Alice.B+tag@Example.ORG", `"a b"@example.org`, "jörg@bücher.example", long} {
		if err := CheckSender(s); err != nil {
			t.Errorf("CheckSender(%q): %v", s, err)
		}
	}
	if len(long) != 318 || len(quoted) != 384 {
		t.Fatalf("the long mailboxes are %d and %d octets", len(long), len(quoted))
	}
	if _, err := addr.Parse(quoted); err != nil {
		t.Fatalf("lib/addr refuses %q: %v", quoted, err)
	}
	for _, s := range []string{"", "golang", "alice", "@example.org", "alice@", "alice@example.org\n", "ali\rce@example.org",
		"alice@example.org\x1b[2J", "alice\x00@example.org", "\"a\x7fb\"@example.org", "a\u0085b@example.org", "\"a\tb\"@example.org",
		strings.Repeat("a", 1000) + "@example.org", quoted, "alice@exa mple.org", "a@b@c", "\xff@example.org"} {
		if err := CheckSender(s); !errors.Is(err, ErrSender) {
			t.Errorf("CheckSender(%q) = %v, want ErrSender", s, err)
		}
	}
}

func TestAccount(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "bob"), 0o700)
	os.Mkdir(filepath.Join(dir, "Carol"), 0o700)
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for local, want := range map[string]string{"bob": "bob", "Bob": "bob", "BOB": "bob"} {
		if a, ok := s.Account(local); !ok || a != want {
			t.Errorf("Account(%q) = %q, %v", local, a, ok)
		}
	}
	for _, local := range []string{"Carol", "carol", "alice", "../bob", ".tmp", ""} {
		if a, ok := s.Account(local); ok {
			t.Errorf("Account(%q) = %q, served", local, a)
		}
	}
}
