package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"im2000/lib/addr"
	"im2000/lib/conf"
)

// TestCollapse: recipients named twice, in any case of the local part,
// make one; past the cap they are left out; lists named twice are posted
// to once.
func TestCollapse(t *testing.T) {
	var rcpts []addr.Mailbox
	for i := range 2000 {
		local := "bob"
		if i%2 == 1 {
			local = "BoB"
		}
		rcpts = append(rcpts, addr.Mailbox{Local: local, Domain: "example.net"})
	}
	rcpts = append(rcpts, mustAddr(t, "carol@example.net"), mustAddr(t, "bob@example.com"), mustAddr(t, "dave@example.net"))
	out, fates := Collapse(rcpts, 3)
	if len(out) != 3 || out[0].Local != "bob" || out[1].Local != "carol" || out[2].Domain != "example.com" {
		t.Fatalf("Collapse kept %v", out)
	}
	if fates[0] != Kept || fates[1] != Duplicate || fates[1999] != Duplicate || fates[2000] != Kept || fates[2002] != OverCap {
		t.Fatalf("fates %v ... %v", fates[:2], fates[1999:])
	}
	_, a := newAccount(t)
	sub := submission(t, "news", "news")
	sub.Recipients = rcpts[:2001]
	env, err := inject(t, a, sub, "x", Limits{MaxRcpt: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Recipients) != 2 || len(env.Lists) != 1 {
		t.Fatalf("envelope of %d recipients and %d lists", len(env.Recipients), len(env.Lists))
	}
	sub.Recipients = rcpts
	if _, err := inject(t, a, sub, "x", Limits{MaxRcpt: 2}); !errors.Is(err, ErrTooManyRecipients) {
		t.Fatalf("four recipients over a cap of two: %v", err)
	}
}

func TestMaxRcpt(t *testing.T) {
	d := conf.Dir(t.TempDir())
	if n, err := MaxRcpt(d); n != DefaultMaxRcpt || err != nil {
		t.Fatalf("default %d, %v", n, err)
	}
	for text, want := range map[string]int{"5\n": 5, "0\n": 0, "-3\n": 0} {
		os.WriteFile(d.Path("maxrcpt"), []byte(text), 0o644)
		if n, err := MaxRcpt(d); n != want || (want == 0) != (err != nil) {
			t.Fatalf("maxrcpt %q: %d, %v", text, n, err)
		}
	}
}

// TestIndexModes: the index directories are made 0700, older ones are
// closed, and a root open to others is warned about.
func TestIndexModes(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o755)
	os.Mkdir(filepath.Join(root, "lists"), 0o755) // as an older version made it
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "open to other users (mode 0755)") {
		t.Fatalf("warnings %q", s.Warnings)
	}
	a, _ := s.Account("alice")
	if _, err := inject(t, a, submission(t, "news"), "x", Limits{}); err != nil {
		t.Fatal(err)
	}
	var open []string
	filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err == nil && path != root && fi.IsDir() && fi.Mode().Perm() != 0o700 {
			open = append(open, path)
		}
		return nil
	})
	if len(open) > 0 {
		t.Fatalf("directories not 0700: %v", open)
	}
	os.Chmod(root, 0o700)
	if s, _ := Open(root); !slices.Equal(s.Warnings, nil) {
		t.Fatalf("warnings for a closed store: %q", s.Warnings)
	}
}
